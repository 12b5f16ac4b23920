"""OpenADR events as grid signals, and the opt-in policy: pure functions of their arguments.

An event (openleadr's parsed dict) carries one or more signals, each with intervals. Each
interval of a supported signal becomes one :class:`GridSignalEvent` over [dtstart, dtstart +
duration) for the site (or the configured region):

| OpenADR signal (name / type)                  | grid.signal.v1                          |
|-----------------------------------------------|-----------------------------------------|
| LOAD_DISPATCH / setpoint                      | ``limit_mw`` = payload                  |
| LOAD_DISPATCH / delta                         | ``reduction_mw`` = payload (asked less) |
| LOAD_CONTROL / x-loadControlSetpoint          | ``limit_mw`` = payload                  |
| LOAD_CONTROL / x-loadControlLevelOffset       | ``reduction_mw`` = payload (asked less) |
| LOAD_CONTROL / x-loadControlCapacity          | ``limit_mw`` = payload x capacity_mw    |
| LOAD_CONTROL / x-loadControlPercentOffset     | ``reduction_mw`` = payload% x capacity  |
| SIMPLE / level 1-3                            | as ``[signals.simple_levels]`` says     |

Payloads are read in the unit the event's itemBase gives (W with an SI scale), else in
``default_unit``. The schema has no free-text field, so the event's ids travel in
``signal_id``: ``oadr:<target>:<event_id>:<signal index>:<interval uid>`` (sanitised; hashed
when too long). The same id is reused when the VTN modifies the event, so the worker replaces
the request; a cancelled event is republished under its ids as a lifted cap
(``limit_mw`` = :data:`LIFTED_MW`, the schema's largest value).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from schemas import DispatchDecision, GridSignalEvent
from streams.openadr.config import OptPolicyConfig, SignalsConfig

#: A cap no site reaches: how a cancelled or withdrawn request is lifted.
LIFTED_MW = 100_000.0

_SCALE = {
    "p": 1e-12,
    "n": 1e-9,
    "micro": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "d": 1e-1,
    "none": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}
_UNIT_W = {"W": 1.0, "kW": 1e3, "MW": 1e6}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")
_MAX_ID = 128

Opt = Literal["optIn", "optOut"]


class UnsupportedSignal(ValueError):  # noqa: N818 - names what the VEN cannot act on
    """A signal the VEN does not translate (prices, unknown types, unconfigured levels)."""


@dataclass(frozen=True, slots=True)
class EventSignals:
    """What one event asks, as grid signals, and what could not be translated."""

    event_id: str
    modification_number: int
    status: str
    signals: tuple[GridSignalEvent, ...]
    unsupported: tuple[str, ...]


def signal_id(target: str, event_id: str, signal_index: int, uid: object) -> str:
    """The traceable, schema-safe id of one interval of one signal of one event."""
    raw = f"oadr:{target}:{event_id}:{signal_index}:{uid}"
    safe = _UNSAFE.sub("-", raw)
    if len(safe) <= _MAX_ID:
        return safe
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return f"{safe[: _MAX_ID - 17]}:{digest}"


def translate(event: Mapping[str, Any], site_id: str, config: SignalsConfig) -> EventSignals:
    """The grid signals of ``event`` (openleadr's dict form)."""
    descriptor = event["event_descriptor"]
    event_id = str(descriptor["event_id"])
    target = config.region or site_id
    signals: list[GridSignalEvent] = []
    unsupported: list[str] = []
    raw_signals = event.get("event_signals") or []
    if isinstance(raw_signals, Mapping):  # openleadr nests a single list in some messages
        raw_signals = raw_signals.get("event_signals", [])
    for index, signal in enumerate(raw_signals):
        name, kind = str(signal.get("signal_name")), str(signal.get("signal_type"))
        try:
            for uid, start, end, payload in _intervals(signal, event):
                limit, reduction, emergency = _request(name, kind, payload, signal, config)
                if limit is None and reduction is None and not emergency:
                    continue  # e.g. SIMPLE level 0: normal operation, nothing asked
                signals.append(
                    GridSignalEvent(
                        interval_start=start,
                        interval_end=end,
                        signal_id=signal_id(target, event_id, index, uid),
                        signal_type="emergency" if emergency else config.signal_type,
                        region=config.region,
                        site_id=None if config.region else site_id,
                        limit_mw=limit,
                        reduction_mw=reduction,
                        incentive_usd_per_mwh=config.incentive_usd_per_mwh,
                    )
                )
        except UnsupportedSignal as exc:
            unsupported.append(f"{name}/{kind}: {exc}")
    return EventSignals(
        event_id=event_id,
        modification_number=int(descriptor.get("modification_number") or 0),
        status=str(descriptor.get("event_status", "")),
        signals=tuple(signals),
        unsupported=tuple(unsupported),
    )


def lifted(signal: GridSignalEvent) -> GridSignalEvent:
    """``signal`` withdrawn: same id and interval, no reduction, a cap no site reaches."""
    return signal.model_copy(
        update={"limit_mw": LIFTED_MW, "reduction_mw": None, "signal_type": "demand_response"}
    )


def _intervals(
    signal: Mapping[str, Any], event: Mapping[str, Any]
) -> list[tuple[object, datetime, datetime, float]]:
    """(uid, start, end, payload) per interval; intervals without a dtstart follow each other
    from the event's active period, as OpenADR 2.0b lays them out."""
    period = event.get("active_period") or {}
    cursor: datetime | None = period.get("dtstart")
    out = []
    for position, interval in enumerate(signal.get("intervals") or []):
        start = interval.get("dtstart") or cursor
        duration: timedelta | None = interval.get("duration")
        if start is None or duration is None or duration.total_seconds() <= 0:
            raise UnsupportedSignal("interval without a start or a positive duration")
        payload = interval.get("signal_payload")
        if not isinstance(payload, int | float) or isinstance(payload, bool):
            raise UnsupportedSignal(f"payload {payload!r} is not a number")
        uid = interval.get("uid", position)
        out.append((uid, start, start + duration, float(payload)))
        cursor = start + duration
    return out


def _watts_per_unit(signal: Mapping[str, Any], config: SignalsConfig) -> float:
    measurement = signal.get("measurement")
    if isinstance(measurement, Mapping) and measurement.get("unit") == "W":
        return _SCALE.get(str(measurement.get("scale") or "none"), 1.0)
    return _UNIT_W[config.default_unit]


def _request(  # noqa: PLR0911 - one return per row of the mapping table above
    name: str, kind: str, payload: float, signal: Mapping[str, Any], config: SignalsConfig
) -> tuple[float | None, float | None, bool]:
    """(limit_mw, reduction_mw, emergency) asked by one interval's payload."""
    to_mw = _watts_per_unit(signal, config) / 1e6
    less = -payload if config.delta_sign == "negative_is_reduction" else payload
    if name.upper() == "SIMPLE":
        level = str(int(payload))
        if level == "0":
            return None, None, False
        rule = config.simple_levels.get(level)  # type: ignore[call-overload]
        if rule is None:
            raise UnsupportedSignal(f"SIMPLE level {level} is not configured")
        return rule.limit_mw, rule.reduction_mw, rule.emergency
    if name == "LOAD_DISPATCH" and kind == "setpoint":
        return _mw(payload * to_mw), None, False
    if (name, kind) in (("LOAD_DISPATCH", "delta"), ("LOAD_CONTROL", "x-loadControlLevelOffset")):
        return (None, _mw(less * to_mw), False) if less > 0 else (None, None, False)
    if name == "LOAD_CONTROL" and kind == "x-loadControlSetpoint":
        return _mw(payload * to_mw), None, False
    if name == "LOAD_CONTROL" and kind in ("x-loadControlCapacity", "x-loadControlPercentOffset"):
        if config.capacity_mw is None:
            raise UnsupportedSignal("needs [signals] capacity_mw")
        if kind == "x-loadControlCapacity":
            return _mw(payload * config.capacity_mw), None, False
        share = less / 100.0
        return (None, _mw(share * config.capacity_mw), False) if share > 0 else (None, None, False)
    raise UnsupportedSignal("not a load request this VEN acts on")


def _mw(value: float) -> float:
    if value < 0:
        raise UnsupportedSignal(f"negative MW {value}")
    return min(value, LIFTED_MW)


def shed_needed_mw(signal: GridSignalEvent, decision: DispatchDecision) -> float:
    """MW the site must shed below its latest plan to honour ``signal``."""
    if signal.reduction_mw is not None:
        return signal.reduction_mw
    if signal.limit_mw is not None:
        return max(0.0, decision.grid_import_mw - signal.limit_mw)
    return 0.0  # an emergency without a number: shed what is interruptible, whatever it is


def opt_for(
    signals: Sequence[GridSignalEvent],
    decision: DispatchDecision | None,
    policy: OptPolicyConfig,
) -> tuple[Opt, str]:
    """Opt in or out of an event that asks ``signals``, and why (for the log)."""
    if policy.mode == "always_in":
        return "optIn", "policy: always opt in"
    if policy.mode == "always_out":
        return "optOut", "policy: always opt out"
    if not signals:
        return "optOut", "nothing this VEN can act on"
    if decision is None:
        choice: Opt = "optIn" if policy.when_no_decision == "opt_in" else "optOut"
        return choice, "no dispatch decision known for the site yet"
    needed = max(shed_needed_mw(s, decision) for s in signals)
    sheddable = decision.mining_mw * policy.pue + policy.extra_sheddable_mw - policy.margin_mw
    if needed <= sheddable + 1e-9:
        return "optIn", f"can shed {sheddable:.3f} MW >= {needed:.3f} MW asked"
    return "optOut", f"can shed {sheddable:.3f} MW < {needed:.3f} MW asked"
