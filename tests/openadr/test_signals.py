"""OpenADR events as grid signals and the opt policy, on openleadr-shaped event dicts (the form
its client hands to on_event), checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.errors import GridshiftError
from streams.openadr.cli import openadr_ven
from streams.openadr.config import OptPolicyConfig, SignalsConfig, VenConfig, load_ven_config
from streams.openadr.signals import LIFTED_MW, lifted, opt_for, signal_id, translate
from tests.agent.decisions import decision

T0 = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[2] / "streams" / "examples" / "openadr_ven.toml"


def event(*signals: dict[str, Any], event_id: str = "evt-1", status: str = "far") -> dict[str, Any]:
    return {
        "event_descriptor": {
            "event_id": event_id,
            "modification_number": 2,
            "event_status": status,
        },
        "active_period": {"dtstart": T0, "duration": timedelta(hours=1)},
        "event_signals": list(signals),
        "response_required": "always",
    }


def signal(name: str, kind: str, *payloads: float, **extra: Any) -> dict[str, Any]:
    return {
        "signal_name": name,
        "signal_type": kind,
        "signal_id": "sig",
        "intervals": [
            {"duration": timedelta(minutes=30), "uid": i, "signal_payload": p}
            for i, p in enumerate(payloads)
        ],
        **extra,
    }


def test_dispatch_delta_becomes_reductions_per_interval_with_traceable_ids() -> None:
    asked = translate(
        event(signal("LOAD_DISPATCH", "delta", -4000.0, -2500.0)), "site-a", SignalsConfig()
    )
    assert [(s.interval_start, s.interval_end, s.reduction_mw) for s in asked.signals] == [
        (T0, T0 + timedelta(minutes=30), 4.0),  # kW by default
        (T0 + timedelta(minutes=30), T0 + timedelta(hours=1), 2.5),
    ]
    first = asked.signals[0]
    assert first.signal_id == "oadr:site-a:evt-1:0:0" and first.site_id == "site-a"
    assert first.signal_type == "demand_response" and first.limit_mw is None
    assert asked.modification_number == 2 and not asked.unsupported


def test_setpoint_in_the_events_own_unit_capacity_and_simple_levels() -> None:
    config = SignalsConfig(capacity_mw=30.0, region="ERCOT")
    megawatt = {"measurement": {"unit": "W", "scale": "M"}}
    asked = translate(
        event(
            signal("LOAD_DISPATCH", "setpoint", 12.0, **megawatt),
            signal("LOAD_CONTROL", "x-loadControlCapacity", 0.5),
            signal("SIMPLE", "level", 0.0, 3.0),
            signal("ELECTRICITY_PRICE", "price", 900.0),
        ),
        "site-a",
        config,
    )
    limits = [(s.limit_mw, s.signal_type, s.region) for s in asked.signals]
    assert limits == [
        (12.0, "demand_response", "ERCOT"),
        (15.0, "demand_response", "ERCOT"),
        (None, "emergency", "ERCOT"),  # SIMPLE 3; level 0 asks nothing
    ]
    assert len(asked.unsupported) == 1 and "ELECTRICITY_PRICE" in asked.unsupported[0]


def test_ids_are_sanitised_and_bounded() -> None:
    sid = signal_id("site-a", "evt/with spaces" + "x" * 200, 0, 0)
    assert len(sid) <= 128 and " " not in sid and "/" not in sid
    assert sid != signal_id("site-a", "evt/with spaces" + "x" * 199 + "y", 0, 0)


def test_opt_policy_compares_the_request_with_sheddable_mining() -> None:
    asked = translate(
        event(signal("LOAD_DISPATCH", "delta", -4000.0)), "site-a", SignalsConfig()
    ).signals
    cap = translate(
        event(signal("LOAD_DISPATCH", "setpoint", 5000.0)), "site-a", SignalsConfig()
    ).signals
    plan = decision("site-a", mining_mw=10.0, gpu_mw=8.0)  # imports 18 MW
    policy = OptPolicyConfig()
    assert opt_for(asked, plan, policy)[0] == "optIn"  # 4 <= 10
    assert opt_for(cap, plan, policy)[0] == "optOut"  # 18 - 5 = 13 > 10
    assert opt_for(cap, plan, OptPolicyConfig(pue=1.3))[0] == "optIn"  # 13 <= 13
    assert opt_for(asked, plan, OptPolicyConfig(margin_mw=7.0))[0] == "optOut"
    assert opt_for(asked, None, policy)[0] == "optOut"
    assert opt_for(asked, None, OptPolicyConfig(when_no_decision="opt_in"))[0] == "optIn"
    assert opt_for((), plan, policy)[0] == "optOut"
    assert opt_for(cap, plan, OptPolicyConfig(mode="always_in"))[0] == "optIn"


def test_lifted_keeps_the_id_and_interval() -> None:
    original = translate(
        event(signal("LOAD_DISPATCH", "delta", -4000.0)), "site-a", SignalsConfig()
    ).signals[0]
    withdrawn = lifted(original)
    assert withdrawn.signal_id == original.signal_id
    assert withdrawn.interval_end == original.interval_end
    assert withdrawn.limit_mw == LIFTED_MW and withdrawn.reduction_mw is None


def test_config_is_strict_and_the_example_is_valid(tmp_path: Path) -> None:
    config = load_ven_config(EXAMPLE)
    assert config.vtn.passphrase is None or "secret" not in repr(config)
    path = tmp_path / "ven.toml"
    path.write_text('[vtn]\nurl = "http://127.0.0.1:9"\nven_name = "a"\n[opt]\nmdoe = "capacity"\n')
    with pytest.raises(GridshiftError, match=r"opt\.mdoe: unknown key \(did you mean 'mode'\?\)"):
        load_ven_config(path)
    with pytest.raises(GridshiftError, match="exactly one of"):
        VenConfig.parse(
            {
                "vtn": {"url": "http://x", "ven_name": "a"},
                "signals": {"simple_levels": {"1": {"reduction_mw": 1, "limit_mw": 2}}},
            },
            "t",
        )
    with pytest.raises(GridshiftError, match="does not match"):
        config.for_site("some-other-site")


def test_cli_says_what_is_missing_in_one_line() -> None:
    result = CliRunner().invoke(
        openadr_ven,
        ["--site", "tx-south-mine", "--config", str(EXAMPLE)],
        env={"GRIDSHIFT_KAFKA_BOOTSTRAP": ""},
    )
    assert isinstance(result.exception, GridshiftError) and "no broker" in str(result.exception)
    assert "--config" in CliRunner().invoke(openadr_ven, ["--help"]).output
