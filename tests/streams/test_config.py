"""The fleet file and settings: validated at the edge with one readable line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.engine.fleet import example_sites_path, load_fleet
from streams.errors import GridshiftError
from streams.settings import load_settings


def test_the_example_fleet_loads_and_translates_to_specs() -> None:
    fleet = load_fleet(None)
    assert {s.site_id for s in fleet.sites} == {"tx-south-mine", "tx-south-ai"}
    spec = fleet.by_id()["tx-south-mine"].spec()
    assert spec.interconnect_mw == 30.0
    assert example_sites_path().is_file()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[sites]]\nsite_id = 'a'\n", "sites file .*: sites.0.price_node: Field required"),
        ("not toml [", "is not valid TOML"),
        (
            "[[sites]]\nsite_id='a'\nprice_node='N'\ncarbon_region='R'\ninterconnect_mw=-5\n"
            "mining_capacity_mw=1\nminer_efficiency_j_per_th=20\ngpu_capacity_mw=1\n",
            "interconnect_mw: Input should be greater than 0",
        ),
    ],
)
def test_bad_fleet_files_give_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(body)
    with pytest.raises(GridshiftError, match=message) as caught:
        load_fleet(path)
    assert "\n" not in str(caught.value)


def test_duplicate_site_ids_are_rejected(tmp_path: Path) -> None:
    site = example_sites_path().read_text().split("[[sites]]")[1]
    path = tmp_path / "fleet.toml"
    path.write_text(f"[[sites]]{site}[[sites]]{site}")
    with pytest.raises(GridshiftError, match="duplicate site_id: tx-south-mine"):
        load_fleet(path)


def test_missing_fleet_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(GridshiftError, match=r"sites file not found: .* \(pass --sites FILE\)"):
        load_fleet(tmp_path / "absent.toml")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("GRIDSHIFT_CONSUMER_FETCH_MAX_WAIT_MS", "25")
    settings = load_settings()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.consumer_fetch_max_wait_ms == 25
    assert settings.topic("grid.price.v1") == "grid.price.v1"


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_DEBOUNCE_MS", "-3")
    with pytest.raises(
        GridshiftError, match="invalid setting debounce_ms \\(env GRIDSHIFT_DEBOUNCE_MS\\)"
    ):
        load_settings()


def test_readme_documents_every_setting() -> None:
    from streams.settings import Settings  # noqa: PLC0415
    from tests.conftest import REPO  # noqa: PLC0415

    readme = (REPO / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`GRIDSHIFT_{n.upper()}`" not in readme]
    assert not missing, f"README configuration table misses {missing}"


def test_log_fields_are_fields_of_the_record_in_both_formats() -> None:
    import json  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from streams.logs import JsonFormatter, LogfmtFormatter, fields  # noqa: PLC0415

    record = logging.LogRecord("streams.x", logging.INFO, __file__, 1, "worker started", (), None)
    record.__dict__.update({"sites": 3, "bootstrap": "127.0.0.1:9092", "note": 'a "b" c'})
    assert fields(record) == {"sites": 3, "bootstrap": "127.0.0.1:9092", "note": 'a "b" c'}
    line = LogfmtFormatter().format(record)
    assert 'msg="worker started" sites=3 bootstrap=127.0.0.1:9092 note="a \\"b\\" c"' in line
    body = json.loads(JsonFormatter().format(record))
    assert body["msg"] == "worker started" and body["sites"] == 3 and body["note"] == 'a "b" c'
