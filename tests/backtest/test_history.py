"""Reading history: canonical, gridstatus and mapped tables; gappy data gets a counted, documented
treatment or a clear error, never a silent wrong answer. The small tables here are SYNTHETIC
test fixtures written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streams.backtest.history import Mapping, load_mapping, read_history
from streams.errors import GridshiftError

HEADER = "interval_start_utc,price_usd_per_mwh,carbon_g_per_kwh,hashprice_usd_per_th_day\n"


def write(tmp_path: Path, body: str, name: str = "history.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_canonical_table_reads_as_is(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "2024-08-20T00:00:00Z,20.5,400,0.05\n2024-08-20T00:15:00Z,25.0,401,0.05\n",
    )
    history = read_history(path)
    assert history.step_minutes == 15
    assert list(history.frame["price_usd_per_mwh"]) == [20.5, 25.0]
    assert history.frame["interval_end_utc"][0] == pd.Timestamp("2024-08-20T00:15:00Z")
    assert history.notes == []


def test_gridstatus_export_is_recognised(tmp_path: Path) -> None:
    body = (
        "Interval Start,Interval End,Location,LMP,Energy,Congestion\n"
        "2024-08-20 00:00:00-05:00,2024-08-20 01:00:00-05:00,HB_SOUTH,30.1,29,1.1\n"
        "2024-08-20 01:00:00-05:00,2024-08-20 02:00:00-05:00,HB_SOUTH,31.2,30,1.2\n"
    )
    history = read_history(write(tmp_path, body))
    assert list(history.frame["node"]) == ["HB_SOUTH", "HB_SOUTH"]
    assert history.frame["interval_start_utc"][0] == pd.Timestamp("2024-08-20T05:00:00Z")
    assert history.step_minutes == 60


def test_gappy_history_is_repaired_and_every_repair_is_reported(tmp_path: Path) -> None:
    body = (
        HEADER
        + "\n".join(
            [
                "2024-08-20T00:30:00Z,30,400,0.05",  # out of order
                "2024-08-20T00:00:00Z,10,400,0.05",
                "2024-08-20T00:15:00Z,,400,0.05",  # NaN price
                "2024-08-20T00:30:00Z,33,400,0.05",  # duplicate interval: the later row wins
                "2024-08-20T01:30:00Z,40,400,0.05",  # three intervals missing before this one
            ]
        )
        + "\n"
    )
    history = read_history(write(tmp_path, body), Mapping(constants={"step_minutes": 15}))
    assert list(history.frame["price_usd_per_mwh"]) == [10.0, 33.0, 40.0]
    notes = " | ".join(history.notes)
    assert "1 intervals without a usable price skipped" in notes
    assert "rows were not in time order: sorted" in notes
    assert "1 duplicate intervals: the last row of each kept" in notes
    assert "NODE: 2 gaps, 4 missing intervals" in notes


def test_unknown_columns_are_an_error_that_says_how_to_map_them(tmp_path: Path) -> None:
    path = write(tmp_path, "when,cost\n2024-08-20T00:00:00Z,1\n")
    with pytest.raises(
        GridshiftError,
        match=r"missing interval_start_utc, price_usd_per_mwh; found columns when, cost "
        r"\(write a mapping file",
    ):
        read_history(path)


def test_naive_local_times_need_a_time_zone_and_dst_is_resolved(tmp_path: Path) -> None:
    # The US fall-back hour 01:00-02:00 happens twice on 2024-11-03.
    rows = [
        "2024-11-03 00:30",
        "2024-11-03 01:00",
        "2024-11-03 01:30",
        "2024-11-03 01:00",
        "2024-11-03 01:30",
        "2024-11-03 02:00",
    ]
    body = "local,price\n" + "".join(f"{r},{i}\n" for i, r in enumerate(rows))
    path = write(tmp_path, body)
    columns = {"interval_start_utc": "local", "price_usd_per_mwh": "price"}
    with pytest.raises(GridshiftError, match="timestamps have no time zone"):
        read_history(path, Mapping(columns=columns))
    history = read_history(
        path, Mapping(columns=columns, timezone="America/Chicago", constants={"step_minutes": 30})
    )
    starts = list(history.frame["interval_start_utc"].dt.strftime("%H:%M"))
    assert starts == ["05:30", "06:00", "06:30", "07:00", "07:30", "08:00"]
    assert history.notes == []


def test_mapping_files_rename_flag_and_set_constants(tmp_path: Path) -> None:
    mapping = write(
        tmp_path,
        '[columns]\ninterval_start_utc = "t"\nprice_usd_per_mwh = "p"\n'
        '[constants]\nnode = "N1"\nregion = "R1"\nstep_minutes = 15\n'
        '[skip_when]\nbad = "1"\n',
        "map.toml",
    )
    body = "t,p,bad\n2024-08-20T00:00:00Z,5,0\n2024-08-20T00:15:00Z,9,1\n"
    history = read_history(write(tmp_path, body), load_mapping(mapping))
    assert list(history.frame["node"]) == ["N1"]
    assert history.notes == ["1 rows flagged bad=1 skipped"]
    bad = write(tmp_path, '[columns]\nwhen = "t"\n', "bad.toml")
    with pytest.raises(GridshiftError, match=r"\['when'\] are not canonical columns"):
        load_mapping(bad)


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "interval_start_utc": pd.to_datetime(["2024-08-20T00:00:00Z", "2024-08-20T00:15:00Z"]),
            "price_usd_per_mwh": [1.0, 2.0],
        }
    )
    path = tmp_path / "history.parquet"
    frame.to_parquet(path)
    assert list(read_history(path).frame["price_usd_per_mwh"]) == [1.0, 2.0]


@pytest.mark.data
def test_the_shared_ercot_table_reads_through_its_mapping(data_dir: Path) -> None:
    from streams.backtest.history import ERCOT_REPLAY, ercot_mapping_path  # noqa: PLC0415

    history = read_history(data_dir / ERCOT_REPLAY, load_mapping(ercot_mapping_path()))
    assert len(history.frame) == 20_520 - 96
    assert history.frame["price_usd_per_mwh"].max() == pytest.approx(4857.82)
    assert any("price_missing=1 skipped" in note for note in history.notes)
