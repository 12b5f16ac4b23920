"""Scenario files (issue 13, items 6 and 7): strict, with the advice that fits the mistake, one
path rule for every file they name, and a reference (docs/SCENARIOS.md) that documents every
key. Tables are SYNTHETIC, written by the tests into their own folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from streams.backtest.coverage import HoldRules
from streams.backtest.history import Mapping, MappingConstants
from streams.backtest.scenario import (
    HashpriceSource,
    MarketSource,
    Scenario,
    SiteGroup,
    load_markets,
    load_scenario,
    scenario_paths,
)
from streams.engine.fleet import PoolConfig, SiteConfig
from streams.engine.horizon import HorizonConfig
from streams.errors import GridshiftError
from tests.backtest.own import backtest, own_scenario, own_table, site_toml
from tests.conftest import REPO


# ---------------------------------------------------------------- item 6: strict, right advice
@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        ("top", "step_minute = 15", "step_minute: unknown key (did you mean step_minutes?)"),
        (
            "market",
            "step_minute = 15",
            "markets[0].step_minute: unknown key (did you mean step_minutes?)",
        ),
        (
            "site",
            "carbon_price_usd_per_ton = 50.0",
            "sites[0].carbon_price_usd_per_ton: unknown key (did you mean carbon_price_usd_per_t?)",
        ),
        (
            "top",
            "[hold]\nprice_minute = 30",
            "hold.price_minute: unknown key (did you mean price_minutes?)",
        ),
    ],
)
def test_typos_are_errors_that_suggest_the_known_key(
    tmp_path: Path, where: str, text: str, expected: str
) -> None:
    own_table(tmp_path)
    kwargs = {
        "top": {"top": text},
        "market": {"market": text},
        "site": {"site": site_toml() + text + "\n"},
    }[where]
    path = own_scenario(tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == f"scenario file {path}: {expected}"


def test_a_misspelt_key_in_a_site_group_template_is_named(tmp_path: Path) -> None:
    own_table(tmp_path)
    template = (
        site_toml()
        .replace("[[sites]]", "[site_groups.template]")
        .replace('site_id = "site-a"\n', "")
    )
    group = '[[site_groups]]\nprefix = "g"\ncount = 2\n' + template + "miner_eficiency = 20.0\n"
    path = own_scenario(tmp_path, site=group)
    with pytest.raises(
        GridshiftError,
        match=r"site_groups\[0\]\.template\.miner_eficiency: unknown key \(did you mean "
        r"miner_efficiency_j_per_th\?\)",
    ):
        load_scenario(path)


def test_a_site_on_a_node_no_market_has_is_named_with_the_known_nodes(tmp_path: Path) -> None:
    own_table(tmp_path)
    path = own_scenario(tmp_path, site=site_toml(price_node="HB_NORTH"))
    with pytest.raises(GridshiftError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"scenario file {path}: site site-a: price_node 'HB_NORTH' is no market's node "
        "(markets: HB_SOUTH); did you mean HB_SOUTH?"
    )


def test_a_mapping_and_inline_reading_keys_together_are_refused(tmp_path: Path) -> None:
    own_table(tmp_path)
    path = own_scenario(tmp_path, market='mapping = "ercot_replay"\nstep_minutes = 15\n')
    with pytest.raises(GridshiftError, match="give either mapping or the inline keys"):
        load_scenario(path)


def test_a_hashprice_table_needs_exactly_one_source(tmp_path: Path) -> None:
    own_table(tmp_path)
    path = own_scenario(tmp_path, top='[hashprice]\ncolumn = "hp"\n')
    with pytest.raises(GridshiftError, match="give exactly one of file or constant_usd_per_th_day"):
        load_scenario(path)


# ---------------------------------------------------------------- item 7: one path rule
def test_relative_paths_resolve_against_the_scenario_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tables").mkdir()
    own_table(tmp_path / "tables")
    mapping = tmp_path / "tables" / "own.toml"
    mapping.write_text("[constants]\nstep_minutes = 15\n", encoding="utf-8")
    path = own_scenario(tmp_path, file="tables/own.csv", market='mapping = "tables/own.toml"\n')
    monkeypatch.chdir("/")
    assert backtest(path).scores["gridshift"].net_margin_usd > 0


def test_absolute_paths_are_used_as_they_are(tmp_path: Path) -> None:
    table = own_table(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = own_scenario(elsewhere, file=str(table))
    assert backtest(path, data_dir=None).scores["gridshift"].net_margin_usd > 0


def test_data_paths_need_a_data_folder_and_say_which_key(tmp_path: Path) -> None:
    own_table(tmp_path)
    path = own_scenario(tmp_path, file="data:own.csv")
    with pytest.raises(GridshiftError) as info:
        backtest(path, data_dir=None)
    assert str(info.value) == (
        "markets[0].file = 'data:own.csv' is in the data folder, but none was given: pass "
        "--data-dir DIR or set GRIDSHIFT_DATA_DIR"
    )
    assert backtest(path, data_dir=tmp_path).scores["gridshift"].net_margin_usd > 0


def test_a_missing_file_says_how_its_path_was_resolved(tmp_path: Path) -> None:
    path = own_scenario(tmp_path, file="nowhere.csv")
    with pytest.raises(GridshiftError) as info:
        backtest(path)
    assert str(info.value) == (
        f"markets[0].file: no file {tmp_path / 'nowhere.csv'} ('nowhere.csv' resolved against "
        f"the file's folder {tmp_path})"
    )


def test_the_shipped_scenarios_load_and_name_the_shared_data_with_data_paths() -> None:
    for name, path in scenario_paths().items():
        scenario = load_scenario(path)
        assert scenario.name == name
        files = [m.file for m in scenario.markets] + [
            m.carbon_file for m in scenario.markets if m.carbon_file
        ]
        assert all(f.startswith("data:") for f in files), files


@pytest.mark.parametrize("forecast", [True, False])
def test_a_shaped_ppa_reaches_the_history_as_hourly_supply_unless_for_scoring_only(
    tmp_path: Path, forecast: bool
) -> None:
    own_table(tmp_path)
    rows = "\n".join(f"2022-08-18T{h:02d}:00:00Z,0,{h}" for h in range(24))
    (tmp_path / "mix.csv").write_text(f"datetime_utc,wind_mw,solar_mw\n{rows}\n")
    top = f'[ppa]\nfile = "mix.csv"\nprofile = "solar"\nforecast = {str(forecast).lower()}\n'
    path = own_scenario(tmp_path, top=top, site=site_toml(ppa_mw=23.0))
    scenario = load_scenario(path)
    history = load_markets(scenario, None, tmp_path).history
    if not forecast:
        assert history.ppa is None  # scoring only: gridshift plans against the flat ppa_mw
        return
    assert history.ppa is not None
    assert len(history.ppa) == 24  # one row per hour of the one-day table, for site-a
    by_hour = history.ppa.set_index(history.ppa["interval_start_utc"].dt.hour)["supply_mw"]
    assert by_hour[11] == pytest.approx(11.0)  # 23 MW x 11 / 23 (synthetic shape)


# ---------------------------------------------------------------- the reference
MODELS: list[tuple[str, type[BaseModel]]] = [
    ("scenario", Scenario),
    ("[[markets]]", MarketSource),
    ("[hashprice]", HashpriceSource),
    ("[hold]", HoldRules),
    ("[horizon]", HorizonConfig),
    ("[[sites]]", SiteConfig),
    ("[[site_groups]]", SiteGroup),
    ("[[pools]]", PoolConfig),
    ("mapping file", Mapping),
    ("[constants]", MappingConstants),
]


@pytest.mark.parametrize(("section", "model"), MODELS, ids=[s for s, _ in MODELS])
def test_every_key_of_both_formats_is_documented(section: str, model: type[BaseModel]) -> None:
    """docs/SCENARIOS.md has a table row (`| `key` | ...`) for every field of every model."""
    text = (REPO / "docs" / "SCENARIOS.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    missing = sorted(set(model.model_fields) - documented)
    assert not missing, f"{section}: {missing} not in docs/SCENARIOS.md"
