"""What a sweep runs: the grid of scenario variants (cartesian product of the varied keys), each
one checked by the strict Scenario model before anything runs. docs/SWEEPS.md is the reference.

A key is a dotted path into the scenario file (``sites.0.gpu_capacity_mw``,
``site_groups.0.template.gpu_capacity_mw``, ``horizon.hours``) or one of the convenience keys:

- ``convert_share`` (0..1): the share of each hall converted to GPU hosting. A site's hall is its
  IT rating as written, ``mining_capacity_mw + gpu_capacity_mw``; the variant has
  ``gpu_capacity_mw = share * hall`` and ``mining_capacity_mw = (1 - share) * hall``, with the GPU
  demand and the take-or-pay floor kept at the same fractions of the GPU capacity as written
  (demand 100 %, floor 0 % when the site as written hosts no GPUs).
- ``gpu_demand_share`` (0..1): GPU demand as a fraction of contracted capacity, on every site:
  ``gpu_demand_mw = share * gpu_capacity_mw`` (applied after ``convert_share``). The take-or-pay
  floor is left as it is: the tenant pays for it whether or not it runs that much.
- ``window`` (a date, ``YYYY-MM-DD``): the price path. The variant replays the same fleet on the
  ``window_days`` days of the same market from that date (00:00Z), so a sweep over several
  windows reads several real price paths of the market, not one re-sampled series.

Convenience keys are applied first (in that order), then dotted paths, which win.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from streams.backtest.mistakes import one_line
from streams.backtest.scenario import Scenario, SiteGroup, resolve_scenario
from streams.engine.fleet import Fleet, SiteConfig
from streams.engine.tomlfiles import closest, read_toml
from streams.errors import GridshiftError

CONVERT_SHARE = "convert_share"
GPU_DEMAND_SHARE = "gpu_demand_share"
WINDOW = "window"
CONVENIENCE = (CONVERT_SHARE, GPU_DEMAND_SHARE, WINDOW)
#: Keys that describe the world rather than a design choice (percentiles are taken over them).
UNCERTAIN_BY_DEFAULT = (GPU_DEMAND_SHARE, WINDOW)
SWEEP_KEYS = ("scenario", "window_days", "vary", "uncertain")

Value = bool | int | float | str


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its settings, the validated scenario and its period."""

    settings: dict[str, Value]
    scenario: Scenario
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """A hash of everything the run depends on (the validated scenario and the period)."""
        payload = json.dumps(
            {
                "scenario": self.scenario.model_dump(mode="json"),
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class SweepSpec:
    """The scenario file, the design keys (``vary``) and the uncertain keys, in order."""

    scenario_path: Path
    vary: dict[str, list[Value]] = field(default_factory=dict)
    uncertain: dict[str, list[Value]] = field(default_factory=dict)
    window_days: float = 7.0

    @property
    def keys(self) -> list[str]:
        return [*self.vary, *self.uncertain]

    @property
    def design_keys(self) -> list[str]:
        return list(self.vary)


def parse_value(text: str) -> Value:
    """``true``/``false``, an int, a float, else the text as it is."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_vary(option: str, texts: Sequence[str]) -> dict[str, list[Value]]:
    """``key=v1,v2`` options as key -> values (one line on a malformed one)."""
    out: dict[str, list[Value]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise GridshiftError(
                f"{option} {text!r}: write KEY=V1,V2,... (e.g. convert_share=0,0.5,1)"
            )
        if key in out:
            raise GridshiftError(f"{option} {key}: given twice")
        out[key] = [parse_value(v) for v in values.split(",")]
    return out


def load_sweep_file(
    path: Path,
) -> tuple[str | None, dict[str, list[Value]], dict[str, list[Value]], float | None]:
    """A sweep file: ``scenario`` (a shipped name or a path relative to the file), ``window_days``,
    ``[vary]`` and ``[uncertain]`` tables of key = [values]."""
    raw = read_toml(path, "sweep")
    for key in raw:
        if key not in SWEEP_KEYS:
            guess = closest(key, SWEEP_KEYS)
            hint = (
                f" (did you mean {guess}?)" if guess else f" (known keys: {', '.join(SWEEP_KEYS)})"
            )
            raise GridshiftError(f"sweep file {path}: {key}: unknown key{hint}")
    scenario = raw.get("scenario")
    if scenario is not None:
        if not isinstance(scenario, str):
            raise GridshiftError(f"sweep file {path}: scenario: give a name or a path")
        relative = path.parent / scenario
        scenario = str(relative) if relative.is_file() else scenario
    tables: list[dict[str, list[Value]]] = []
    for name in ("vary", "uncertain"):
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise GridshiftError(f"sweep file {path}: [{name}] must be a table of key = [values]")
        checked: dict[str, list[Value]] = {}
        for key, values in table.items():
            if not isinstance(values, list) or not values:
                raise GridshiftError(f"sweep file {path}: {name}.{key}: give a non-empty list")
            checked[key] = [v.isoformat() if hasattr(v, "isoformat") else v for v in values]
        tables.append(checked)
    days = raw.get("window_days")
    if days is not None and (not isinstance(days, int | float) or days <= 0):
        raise GridshiftError(f"sweep file {path}: window_days: give a positive number of days")
    return scenario, tables[0], tables[1], None if days is None else float(days)


def build_spec(
    scenario: str | None,
    vary: Sequence[str] = (),
    uncertain: Sequence[str] = (),
    sweep_file: Path | None = None,
    window_days: float | None = None,
) -> SweepSpec:
    """The sweep asked on the command line and/or in a sweep file (the command line adds keys
    and replaces a file's values for the same key)."""
    file_scenario, file_vary, file_uncertain, file_days = (
        load_sweep_file(sweep_file) if sweep_file is not None else (None, {}, {}, None)
    )
    name = scenario or file_scenario
    if name is None:
        raise GridshiftError("no scenario: give SCENARIO or scenario = ... in the sweep file")
    designs = {**file_vary, **parse_vary("--vary", vary)}
    worlds = {**file_uncertain, **parse_vary("--uncertain", uncertain)}
    # The uncertainty keys are so wherever they are given.
    for key in UNCERTAIN_BY_DEFAULT:
        if key in designs:
            worlds.setdefault(key, designs.pop(key))
    both = sorted(set(designs) & set(worlds))
    if both:
        raise GridshiftError(f"{', '.join(both)}: varied both as a design choice and as uncertain")
    if not designs and not worlds:
        raise GridshiftError("nothing to vary: give --vary KEY=V1,V2 or a --sweep-file")
    return SweepSpec(resolve_scenario(name), designs, worlds, window_days or file_days or 7.0)


def expand(
    spec: SweepSpec, start: datetime | None = None, end: datetime | None = None
) -> list[Variant]:
    """Every variant of the grid, validated (one line naming the first bad one)."""
    raw = read_toml(spec.scenario_path, "scenario")
    keys = spec.keys
    for key in keys:
        check_key(key, raw)
    grids = [*spec.vary.values(), *spec.uncertain.values()]
    variants: list[Variant] = []
    for values in itertools.product(*grids):
        settings = dict(zip(keys, values, strict=True))
        variants.append(make_variant(raw, settings, spec, start, end))
    return variants


def make_variant(
    raw: Mapping[str, Any],
    settings: dict[str, Value],
    spec: SweepSpec,
    start: datetime | None,
    end: datetime | None,
) -> Variant:
    data: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    where = ", ".join(f"{k}={v}" for k, v in settings.items())
    if CONVERT_SHARE in settings:
        _convert(data, _share(settings[CONVERT_SHARE], CONVERT_SHARE))
    if GPU_DEMAND_SHARE in settings:
        _demand(data, _share(settings[GPU_DEMAND_SHARE], GPU_DEMAND_SHARE))
    for key, value in settings.items():
        if key not in CONVENIENCE:
            _set(data, key.split("."), value)
    scenario = validate(data, f"variant {where}")
    first, last = start or scenario.start, end or scenario.end
    if WINDOW in settings:
        first = _window_start(settings[WINDOW])
        last = first + timedelta(days=spec.window_days)
    if last <= first:
        raise GridshiftError(f"variant {where}: the backtest window is empty")
    return Variant(settings, scenario, first, last)


def validate(data: dict[str, Any], where: str) -> Scenario:
    """The strict model's checks of :func:`~streams.backtest.scenario.load_scenario` on a dict
    (its market check is left to the run, which names the site and node the same way)."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise GridshiftError(f"{where}: {one_line(exc, Scenario)}") from exc
    for i, group in enumerate(scenario.site_groups):
        try:
            SiteConfig.model_validate(group.expand()[0])
        except ValidationError as exc:
            raise GridshiftError(
                f"{where}: {one_line(exc, SiteConfig, f'site_groups[{i}].template')}"
            ) from exc
    try:
        scenario.fleet()
    except ValidationError as exc:
        raise GridshiftError(f"{where}: {one_line(exc, Fleet)}") from exc
    return scenario


def check_key(key: str, raw: Mapping[str, Any]) -> None:
    """A varied key must be a convenience key or a path the scenario model knows; an unknown
    part is named with the closest known one."""
    if key in CONVENIENCE:
        return
    parts = key.split(".")
    model: Any = Scenario
    node: Any = raw
    walked: list[str] = []
    for part in parts:
        here = ".".join(walked) or "the scenario"
        model = _unwrap(model)
        if isinstance(model, type) and issubclass(model, BaseModel):
            known = list(model.model_fields)
            if part not in known:
                options = [*known, *CONVENIENCE] if not walked else known
                guess = closest(part, options)
                hint = (
                    f"did you mean {'.'.join([*walked, guess])}?"
                    if guess
                    else f"known keys in {here}: {', '.join(known)}"
                )
                raise GridshiftError(f"--vary {key}: unknown key {part!r} ({hint})")
            annotation = model.model_fields[part].annotation
            model = SiteConfig if (model is SiteGroup and part == "template") else annotation
            node = node.get(part) if isinstance(node, dict) else None
        elif get_origin(model) in (tuple, list):
            if not part.isdigit():
                raise GridshiftError(
                    f"--vary {key}: {here} is a list: give an index, e.g. {here}.0"
                )
            count = len(node) if isinstance(node, list) else 0
            if int(part) >= count:
                raise GridshiftError(f"--vary {key}: {here} has {count} item(s) in the scenario")
            node = node[int(part)]
            model = get_args(model)[0]
        elif get_origin(model) is dict:
            node = node.get(part) if isinstance(node, dict) else None
            model = get_args(model)[1]
        else:
            raise GridshiftError(f"--vary {key}: {here} is a value, not a table")
        walked.append(part)


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _set(data: dict[str, Any], parts: list[str], value: Value) -> None:
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _share(value: Value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise GridshiftError(f"{key} = {value!r}: give a share from 0 to 1")
    return float(value)


def _sites(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every explicit site and every group's template (as dicts in ``data``)."""
    return [*data.get("sites", []), *(g["template"] for g in data.get("site_groups", []))]


def _convert(data: dict[str, Any], share: float) -> None:
    for site in _sites(data):
        gpu = float(site.get("gpu_capacity_mw", 0.0))
        hall = float(site.get("mining_capacity_mw", 0.0)) + gpu
        demand = float(site["gpu_demand_mw"]) / gpu if gpu > 0 and "gpu_demand_mw" in site else 1.0
        floor = float(site.get("gpu_floor_mw", 0.0)) / gpu if gpu > 0 else 0.0
        site["gpu_capacity_mw"] = share * hall
        site["mining_capacity_mw"] = (1.0 - share) * hall
        site["gpu_demand_mw"] = demand * share * hall
        site["gpu_floor_mw"] = floor * share * hall


def _demand(data: dict[str, Any], share: float) -> None:
    for site in _sites(data):
        site["gpu_demand_mw"] = share * float(site.get("gpu_capacity_mw", 0.0))


def _window_start(value: Value) -> datetime:
    try:
        day = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise GridshiftError(f"window = {value!r}: give a date, YYYY-MM-DD") from exc
    return day.replace(tzinfo=UTC) if day.tzinfo is None else day.astimezone(UTC)
