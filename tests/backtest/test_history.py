"""Reading history: canonical, gridstatus and mapped tables; gappy data gets a counted, documented
treatment or a clear error, never a silent wrong answer. The small tables here are SYNTHETIC
test fixtures written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streams.backtest.history import Mapping, MappingConstants, load_mapping, read_history
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
    history = read_history(
        write(tmp_path, body), Mapping(constants=MappingConstants(step_minutes=15))
    )
    assert list(history.frame["price_usd_per_mwh"]) == [10.0, 33.0, 40.0]
    assert history.notes == [
        "NODE: 1 row out of time order in the file, sorted (nothing dropped)",
        "NODE: 1 row without a price dropped (2024-08-20 00:15Z)",
        "NODE: 1 row repeating an interval dropped (the last row kept) (2024-08-20 00:30Z)",
        "NODE: 2 gaps, 4 intervals missing (the first from 2024-08-20 00:15Z, the longest 45 min)",
    ]


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
    with pytest.raises(GridshiftError, match="interval_start_utc has no time zone"):
        read_history(path, Mapping(columns=columns))
    history = read_history(
        path,
        Mapping(
            columns=columns, timezone="America/Chicago", constants=MappingConstants(step_minutes=30)
        ),
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
    assert history.notes == ["N1: 1 row flagged bad=1 skipped (2024-08-20 00:15Z)"]
    bad = write(tmp_path, '[columns]\nwhen = "t"\n', "bad.toml")
    with pytest.raises(GridshiftError, match=r"columns: 'when' is not a canonical column"):
        load_mapping(bad)
    # Strict about types: "15" is no interval length, and bounds stay numbers.
    for text, where in (
        ('[constants]\nstep_minutes = "15"\n', "constants.step_minutes"),
        ('[constants]\nprice_bounds_usd_per_mwh = [-250, "5000"]\n', "price_bounds_usd_per_mwh"),
    ):
        wrong = write(tmp_path, text, "wrong.toml")
        with pytest.raises(GridshiftError, match=rf"{where}.*: Input should be a valid"):
            load_mapping(wrong)
    bounds = write(tmp_path, "[constants]\nprice_bounds_usd_per_mwh = [-250, 5000]\n", "ok.toml")
    assert load_mapping(bounds).price_bounds == (-250.0, 5000.0)


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
    assert any("96 rows flagged price_missing=1 skipped" in note for note in history.notes)


# Issue 13, item 3: a gridstatus-style export with -08:00 and -07:00 offsets crosses a DST change.
@pytest.mark.parametrize(
    ("first", "last", "rows"),
    [("2024-03-09 00:00", "2024-03-11 00:00", 48), ("2024-11-02 00:00", "2024-11-04 00:00", 50)],
    ids=["spring-forward", "fall-back"],
)
def test_offsets_that_change_across_dst_parse_to_utc(
    tmp_path: Path, first: str, last: str, rows: int
) -> None:
    times = pd.date_range(first, last, freq="1h", tz="America/Los_Angeles")
    pd.DataFrame(
        {
            "Interval Start": [t.isoformat(sep=" ") for t in times],
            "Interval End": [(t + pd.Timedelta(hours=1)).isoformat(sep=" ") for t in times],
            "Location": "TH_NP15_GEN-APND",
            "LMP": 30.0,
        }
    ).to_csv(tmp_path / "gridstatus.csv", index=False)
    history = read_history(tmp_path / "gridstatus.csv")
    starts = history.frame["interval_start_utc"]
    assert len(starts) == rows
    assert (starts.diff().dropna() == pd.Timedelta(hours=1)).all()
    assert (history.frame["interval_end_utc"] - starts == pd.Timedelta(hours=1)).all()
    assert starts[0] == pd.Timestamp(first, tz="America/Los_Angeles").tz_convert("UTC")
    assert history.notes == []


def test_a_table_mixing_offsets_and_naive_times_is_refused_at_the_first_naive_row(
    tmp_path: Path,
) -> None:
    body = HEADER + "2024-08-20T00:00:00-05:00,20,400,0.05\n2024-08-20 00:15,21,400,0.05\n"
    with pytest.raises(GridshiftError, match=r"row 2: '2024-08-20 00:15'"):
        read_history(write(tmp_path, body))


# Issue 13, item 4: sentinels and values outside a market's bounds are dropped and counted.
def test_sentinel_and_out_of_bounds_prices_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [
        f"2024-08-20T00:{m:02d}:00Z,{p},400,0.05"
        for m, p in zip((0, 15, 30, 45), (20, -9999, 9999, 6000), strict=True)
    ]
    path = write(tmp_path, HEADER + "\n".join(rows) + "\n")
    history = read_history(path)
    assert list(history.frame["price_usd_per_mwh"]) == [20.0, 6000.0]
    assert history.notes == [
        "NODE: 1 row with a price outside -1,000..10,000 $/MWh dropped "
        "(-9,999 at 2024-08-20 00:15Z)",
        "NODE: 1 row with a sentinel price dropped (9,999 at 2024-08-20 00:30Z)",
        "NODE: 1 gap, 2 intervals missing (the first from 2024-08-20 00:15Z, the longest 30 min)",
    ]
    # A market's own bounds (ERCOT: offer floor -$250, cap $5,000) drop the $6,000 row too.
    ercot = Mapping(constants=MappingConstants(price_bounds_usd_per_mwh=(-250.0, 5000.0)))
    assert list(read_history(path, ercot).frame["price_usd_per_mwh"]) == [20.0]


def test_carbon_outside_physical_bounds_is_dropped_but_the_price_kept(tmp_path: Path) -> None:
    body = HEADER + "2024-08-20T00:00:00Z,20,-5,0.05\n2024-08-20T00:15:00Z,21,99999,0.05\n"
    history = read_history(write(tmp_path, body))
    assert list(history.frame["price_usd_per_mwh"]) == [20.0, 21.0]
    assert history.frame["carbon_g_per_kwh"].isna().all()
    assert history.notes == [
        "NODE: 2 rows with carbon outside 0..2,000 g/kWh (carbon value dropped) "
        "(-5 at 2024-08-20 00:00Z, 99,999 at 2024-08-20 00:15Z)"
    ]


def test_a_hashprice_1000x_too_large_is_refused_with_its_likely_cause(tmp_path: Path) -> None:
    body = HEADER + "2024-08-20T00:00:00Z,20,400,50\n"  # $/PH/day in the $/TH/day column
    with pytest.raises(GridshiftError, match=r"hashprice 50 .* looks like \$/PH/day"):
        read_history(write(tmp_path, body))


# Issue 13, item 6: mapping files are strict, and their mistakes get the advice that fits.
def local_table(tmp_path: Path) -> Path:
    times = pd.date_range("2024-08-18 00:00", periods=4, freq="15min")
    frame = pd.DataFrame({"time_local": times.strftime("%Y-%m-%d %H:%M"), "lmp": 30.0, "hp": 0.05})
    frame.to_csv(tmp_path / "local.csv", index=False)
    return tmp_path / "local.csv"


def test_timezone_written_under_constants_says_where_it_belongs(tmp_path: Path) -> None:
    mapping = write(
        tmp_path,
        '[columns]\ninterval_start_utc = "time_local"\nprice_usd_per_mwh = "lmp"\n'
        '[constants]\nnode = "N"\ntimezone = "America/Chicago"\n',
        "map.toml",
    )
    with pytest.raises(GridshiftError) as info:
        load_mapping(mapping)
    message = str(info.value)
    assert "timezone is a top-level key: write it before the first [table]" in message
    assert "read as part of [constants]" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "[constants]\nstep_minute = 15\n",
            "constants.step_minute: unknown key (did you mean step_minutes?)",
        ),
        ('timezon = "UTC"\n', "timezon: unknown key (did you mean timezone?)"),
        ('[column]\nnode = "n"\n', "column: unknown key (did you mean columns?)"),
        ('[columns]\nprice_usd_per_mw = "p"\n', "did you mean price_usd_per_mwh?"),
        ('timezone = "America/Chicgo"\n', "unknown time zone 'America/Chicgo'"),
    ],
)
def test_mapping_mistakes_name_the_key_and_the_closest_known_one(
    tmp_path: Path, body: str, expected: str
) -> None:
    with pytest.raises(GridshiftError, match=r"mapping file .*map\.toml: ") as info:
        load_mapping(write(tmp_path, body, "map.toml"))
    assert expected in str(info.value)


def test_a_mapped_source_column_that_does_not_exist_is_named_with_the_closest(
    tmp_path: Path,
) -> None:
    mapping = write(
        tmp_path,
        'timezone = "America/Chicago"\n[columns]\ninterval_start_utc = "time_local"\n'
        'price_usd_per_mwh = "LMP_price"\n',
        "map.toml",
    )
    with pytest.raises(GridshiftError) as info:
        read_history(local_table(tmp_path), load_mapping(mapping))
    assert str(info.value) == (
        "mapping maps price_usd_per_mwh to 'LMP_price', not a column of local.csv "
        "(columns: time_local, lmp, hp; closest: lmp)"
    )
