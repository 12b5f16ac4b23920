"""The sources file and settings are strict: the example loads, an unknown key or variable names
the closest valid one, a bad value is one line with its section, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import GridshiftError
from streams.sources.config import load_source_settings, load_sources_file
from tests.conftest import REPO

EXAMPLE = REPO / "streams" / "examples" / "sources.toml"


def test_the_example_file_loads() -> None:
    sources = load_sources_file(EXAMPLE)
    assert set(sources.iso) == {"ERCOT", "CAISO", "PJM", "NYISO"}
    assert sources.iso["ERCOT"].node_map()["HB_SOUTH"] == "HB_SOUTH"
    assert sources.iso["PJM"].node_map() == {
        "DOMINION HUB": "PJM_DOM_HUB",
        "WESTERN HUB": "PJM_WESTERN_HUB",
    }
    assert sources.carbon.regions["ERCOT"].electricitymaps == "US-TEX-ERCO"
    assert sources.hashprice.prices_url() == "https://mempool.space/api/v1/prices"
    assert sources.carbon.poll_interval_s == 300.0  # each source's own default
    assert sources.reserve.products == ["reg_up", "reg_down", "rrs", "ecrs", "non_spin"]
    assert sources.reserve.ahead_from_hour == 13.0
    assert sources.coincident_peak.tariff_usd_per_kw_year == 68.5
    assert sources.coincident_peak.min_probability == 0.001


def test_no_file_means_defaults() -> None:
    sources = load_sources_file(None)
    assert sources.iso == {}
    assert sources.hashprice.interval_minutes == 60


UNKNOWN_KEYS = [
    ("[hashprise]\n", "unknown key 'hashprise' in the top level; did you mean 'hashprice'?"),
    (
        '[iso.ERCTO]\nnodes = ["HB_SOUTH"]\n',
        "unknown key 'ERCTO' in [iso]; did you mean 'ERCOT'?",
    ),
    (
        '[iso.ERCOT]\nnodez = ["HB_SOUTH"]\n',
        "unknown key 'nodez' in [iso.ERCOT]; did you mean 'nodes'?",
    ),
    (
        "[carbon]\npoll_intervl_s = 3\n",
        "unknown key 'poll_intervl_s' in [carbon]; did you mean 'poll_interval_s'?",
    ),
    (
        '[carbon.regions.ERCOT]\nelectricitymap = "x"\n',
        "unknown key 'electricitymap' in [carbon.regions.ERCOT]; did you mean 'electricitymaps'?",
    ),
    ("[hashprice]\nzzz = 1\n", "unknown key 'zzz' in [hashprice] (known: "),
    (
        "[reserve]\nproduct = []\n",
        "unknown key 'product' in [reserve]; did you mean 'products'?",
    ),
    (
        "[coincident_peak]\nmin_probabilty = 0.01\n",
        "unknown key 'min_probabilty' in [coincident_peak]; did you mean 'min_probability'?",
    ),
    ("[coincident-peak]\n", "unknown key 'coincident-peak' in the top level; did you mean"),
]


@pytest.mark.parametrize(("text", "message"), UNKNOWN_KEYS)
def test_an_unknown_key_names_the_closest_one(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    with pytest.raises(GridshiftError) as raised:
        load_sources_file(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


BAD_VALUES = [
    (
        "[iso.ERCOT]\nlookback_hours = 100\n",
        "[iso.ERCOT]: Value error, lookback_hours must be shorter than dedup_window_hours",
    ),
    ('[iso.PJM]\nnodes = ["WESTERN HUB"]\n', "[iso.PJM] nodes.WESTERN HUB: String should match"),
    ("[hashprice]\ninterval_minutes = 7\n", "interval_minutes must divide a day"),
    ('[iso.ERCOT]\nmarkets = ["intraday"]\n', "[iso.ERCOT] markets.0: Input should be"),
    (
        '[carbon]\nmarginal = "watttime"\n[carbon.regions.ERCOT]\nelectricitymaps = "x"\n',
        "region ERCOT has no watttime name",
    ),
    (
        "[hashprice]\nbackoff_initial_s = 10\nbackoff_max_s = 1\n",
        "backoff_initial_s must not exceed backoff_max_s",
    ),
    ("not toml = = 1", "is not valid TOML"),
    ('[reserve]\nproducts = ["regup"]\n', "[reserve] products.0: Input should be"),
    (
        "[reserve]\nahead_from_hour = 18\n",
        "ahead_from_hour must be before ahead_late_hour",
    ),
    ('[reserve]\nproducts = ["rrs", "rrs"]\n', "products must be listed once each"),
    ("[coincident_peak]\nmin_probability = 0\n", "[coincident_peak] min_probability:"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES)
def test_a_bad_value_is_one_line_with_its_section(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    with pytest.raises(GridshiftError) as raised:
        load_sources_file(path)
    assert message in str(raised.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GridshiftError, match="sources file not found"):
        load_sources_file(tmp_path / "nope.toml")


def test_settings_come_from_the_environment_and_hide_secrets(tmp_path: Path) -> None:
    settings = load_source_settings(
        {
            "GRIDSHIFT_SOURCE_STATE_DIR": str(tmp_path),
            "GRIDSHIFT_SOURCE_HEALTH_PORT": "0",
            "GRIDSHIFT_SOURCE_ELECTRICITYMAPS_TOKEN": "secret-token",
            "GRIDSHIFT_KAFKA_BOOTSTRAP": "ignored:9092",  # not ours: left to Settings
        },
        health_host="0.0.0.0",  # a flag overrides the environment
    )
    assert settings.state_dir == tmp_path
    assert settings.health_port == 0
    assert settings.health_host == "0.0.0.0"
    assert settings.electricitymaps_token is not None
    assert settings.electricitymaps_token.get_secret_value() == "secret-token"
    assert "secret-token" not in repr(settings)
    assert "secret-token" not in settings.model_dump_json()


def test_an_unknown_variable_names_the_closest_one() -> None:
    with pytest.raises(GridshiftError) as raised:
        load_source_settings({"GRIDSHIFT_SOURCE_STATEDIR": "x"})
    assert str(raised.value) == (
        "unknown environment variable GRIDSHIFT_SOURCE_STATEDIR; "
        "did you mean 'GRIDSHIFT_SOURCE_STATE_DIR'?"
    )


def test_a_bad_setting_names_its_variable() -> None:
    with pytest.raises(GridshiftError, match=r"health_port \(env GRIDSHIFT_SOURCE_HEALTH_PORT\)"):
        load_source_settings({"GRIDSHIFT_SOURCE_HEALTH_PORT": "70000"})
