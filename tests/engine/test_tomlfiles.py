"""The strict-file helper every loader shares: the keys known at a place of a file (through
optional sections, arrays of tables, tables of sections and ``Literal``-named tables), the first
unknown key in file order, the closest known key, and one line per bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.engine.tomlfiles import (
    UnknownKey,
    closest,
    first_error,
    first_unknown_key,
    keys_at,
    read_toml,
)
from streams.errors import GridshiftError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Level(_Strict):
    reduction_mw: float | None = None
    emergency: bool = False


class Miner(_Strict):
    host: str
    max_w: float = 1.0


class Gpu(_Strict):
    share: float = 1.0


class File(_Strict):
    name: str = "x"
    miners: tuple[Miner, ...] = ()
    batches: list[Annotated[Miner, Field(description="same as miners")]] = []
    gpu: Gpu | None = None
    levels: dict[Literal["1", "2", "3"], Level] = {}
    labels: dict[str, str] = {}


@pytest.mark.parametrize(
    ("location", "keys"),
    [
        ((), ["name", "miners", "batches", "gpu", "levels", "labels"]),
        (("miners", 0), ["host", "max_w"]),  # an array of tables: its item's section
        (("batches", 3), ["host", "max_w"]),  # through Annotated
        (("gpu",), ["share"]),  # an optional section
        (("levels",), ["1", "2", "3"]),  # a table keyed by a Literal names its keys
        (("levels", "2"), ["reduction_mw", "emergency"]),  # a table of sections
        (("labels",), []),  # any key goes
        (("name",), []),  # a value, no table
        (("nope", "deeper"), []),
    ],
)
def test_keys_at_a_place_of_the_file(location: tuple[int | str, ...], keys: list[str]) -> None:
    assert keys_at(File, location) == keys


def test_an_unknown_key_in_a_table_of_sections_names_the_closest() -> None:
    with pytest.raises(ValidationError) as raised:
        File.model_validate({"levels": {"1": {"reductin_mw": 1.0}}})
    assert first_error(raised.value, File) == (
        "levels.1.reductin_mw: unknown key (did you mean 'reduction_mw'?)"
    )
    with pytest.raises(ValidationError) as raised:
        File.model_validate({"levels": {"1": {"zzzzzz": 1.0}}})
    assert first_error(raised.value, File) == (
        "levels.1.zzzzzz: unknown key; known keys: emergency, reduction_mw"
    )
    # Without the model there is nothing to suggest: pydantic's own words.
    assert first_error(raised.value) == "levels.1.zzzzzz: Extra inputs are not permitted"


def test_a_problem_of_the_whole_file_says_so() -> None:
    class Pair(_Strict):
        low: int
        high: int

        @model_validator(mode="after")
        def _ordered(self) -> Self:
            if self.low > self.high:
                raise ValueError("low must not exceed high")
            return self

    with pytest.raises(ValidationError) as raised:
        Pair.model_validate({"low": 2, "high": 1})
    assert first_error(raised.value, Pair) == "(root): Value error, low must not exceed high"


@pytest.mark.parametrize(
    ("data", "found"),
    [
        ({"name": "a", "gpu": {"shar": 1}}, UnknownKey(("gpu",), "shar", ("share",))),
        (
            {"miners": [{"host": "a"}, {"host": "b", "maxw": 1}]},
            UnknownKey(("miners", 1), "maxw", ("host", "max_w")),
        ),
        (
            {"levels": {"4": {}}},
            UnknownKey(("levels",), "4", ("1", "2", "3")),
        ),
        (  # the first in the file, not the first in the model (pydantic's order)
            {"gpuu": {}, "labels": {"anything": "goes"}, "levels": {"1": {"q": 1}}},
            UnknownKey((), "gpuu", ("name", "miners", "batches", "gpu", "levels", "labels")),
        ),
        (
            {"labels": {"anything": "goes"}, "levels": {"1": {"q": 1}}},
            UnknownKey(("levels", "1"), "q", ("reduction_mw", "emergency")),
        ),
        ({"name": {"not": "a table"}, "gpu": 3, "miners": "x"}, None),  # types: pydantic's
    ],
)
def test_the_first_unknown_key_in_file_order(data: object, found: UnknownKey | None) -> None:
    assert first_unknown_key(data, File) == found


def test_the_closest_key_ignores_case_and_gives_up_when_nothing_is_close() -> None:
    assert closest("ercot", ["CAISO", "ERCOT", "PJM"]) == "ERCOT"
    assert closest("step_minute", ["step_minutes", "start"]) == "step_minutes"
    assert closest("zzzz", ["step_minutes", "start"]) is None
    assert closest("x", []) is None


def test_a_missing_or_broken_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(GridshiftError) as raised:
        read_toml(tmp_path / "nope.toml", "agent", hint=" (pass --config FILE)")
    assert (
        str(raised.value) == f"agent file not found: {tmp_path / 'nope.toml'} (pass --config FILE)"
    )
    path = tmp_path / "bad.toml"
    path.write_text('name = "a"\nnot toml = = 1\n')
    with pytest.raises(GridshiftError) as raised:
        read_toml(path, "agent")
    message = str(raised.value)
    assert message.startswith(f"agent file {path} is not valid TOML: ")
    assert "line 2" in message and "\n" not in message
