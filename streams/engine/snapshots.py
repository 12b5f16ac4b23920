"""Translation between the wire and the core: state -> optimizer snapshot, plan -> decision.

Only past data is used: a snapshot at ``now`` reads curve points that start at or before each
step, and says in ``notes`` which values were held or assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from optimizer import Horizon, SiteSnapshot
from streams.engine.curves import Curve, Lookup
from streams.engine.fleet import SiteConfig
from streams.engine.state import FleetState

_NO_CURVE = Curve()  # read where a region has no carbon data yet; never written


class RoundReads:
    """Curve reads shared by the sites of one decision round.

    Hundreds of sites share a few price nodes, a carbon region and the hashprice, and the sites
    of one node share its clock, hence the step grid: each curve is read at each step once per
    round instead of once per site (a 200-site round read 21,000 points for 210 distinct ones).
    Valid for one round only: the state must not change while it is in use.
    """

    def __init__(self, horizon: Horizon) -> None:
        self.horizon = horizon
        self._starts: dict[datetime, tuple[datetime, ...]] = {}
        self._reads: dict[tuple[int, datetime], list[Lookup | None]] = {}

    def starts(self, now: datetime) -> tuple[datetime, ...]:
        starts = self._starts.get(now)
        if starts is None:
            starts = self._starts[now] = self.horizon.starts(now)
        return starts

    def read(self, curve: Curve, now: datetime) -> list[Lookup | None]:
        """``curve`` at every step start of the grid that begins at ``now``."""
        key = (id(curve), now)  # the curve outlives the round: its id cannot be reused meanwhile
        values = self._reads.get(key)
        if values is None:
            values = self._reads[key] = [curve.at(t) for t in self.starts(now)]
        return values


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """A snapshot with the event times of its steps and a digest of everything in it."""

    site: SiteConfig
    now: datetime
    step_starts: tuple[datetime, ...]
    step_ends: tuple[datetime, ...]
    snapshot: SiteSnapshot
    notes: tuple[str, ...]
    input_version: str


def build_snapshot(
    state: FleetState,
    site: SiteConfig,
    horizon: Horizon,
    *,
    now: datetime | None = None,
    mining_cap_mw: float | None = None,
    reads: RoundReads | None = None,
) -> SnapshotView | None:
    """The site's snapshot at ``now`` (default: its event-time clock), or None until price and
    hashprice are known. Only points that start at or before each step are read. A round
    building many snapshots passes one ``reads`` to all of them."""
    now = now or state.clock(site)
    price_curve = state.prices.get(site.price_node)
    if now is None or price_curve is None:
        return None
    reads = reads or RoundReads(horizon)
    starts = reads.starts(now)
    ends = (*starts[1:], starts[-1] + horizon.step(horizon.n_steps - 1))
    prices = reads.read(price_curve, now)
    hashprices = reads.read(state.hashprice, now)
    if prices[0] is None or hashprices[0] is None:
        return None
    notes: list[str] = []
    held = sum(1 for p in prices if p is None or p.held)
    if held:
        notes.append(f"price: {held} of {horizon.n_steps} steps held at the last known value")
    carbon_curve = state.carbon.get(site.carbon_region) or _NO_CURVE
    carbon_values = reads.read(carbon_curve, now)
    if carbon_values[0] is None:
        notes.append(f"carbon intensity unknown for {site.carbon_region}: emissions assumed 0")

    demand = state.demand.get(site.site_id)
    telemetry = state.telemetry.get(site.site_id)
    n = horizon.n_steps
    ones = np.ones(n)
    hours = np.asarray(horizon.step_hours)
    caps, peaks = _signal_curves(state, site, starts, ends, hours)
    snapshot = SiteSnapshot(
        step_hours=hours,
        price_usd_per_mwh=_fill(prices),
        carbon_g_per_kwh=_fill(carbon_values, default=0.0),
        hashprice_usd_per_th_day=_fill(hashprices),
        gpu_value_usd_per_mwh=ones
        * (demand.value_usd_per_mwh if demand else site.gpu_value_usd_per_mwh),
        gpu_demand_mw=ones * (demand.demand_mw if demand else site.firm_gpu_demand_mw),
        gpu_floor_mw=ones * (demand.contracted_floor_mw if demand else site.gpu_floor_mw),
        mining_available_mw=ones
        * min(
            telemetry.mining_available_mw if telemetry else site.mining_capacity_mw,
            site.mining_capacity_mw if mining_cap_mw is None else mining_cap_mw,
        ),
        signal_cap_mw=caps,
        carbon_price_usd_per_t=site.carbon_price_usd_per_t,
        onsite_cfe_mw=ones * site.onsite_cfe_mw,
        ppa_mw=ones * site.ppa_mw,
        peak_cost_usd_per_mw=peaks,
        mining_now_mw=telemetry.mining_mw if telemetry else None,
        battery_soc_mwh=(telemetry.battery_soc_mwh or 0.0) if telemetry else 0.0,
    )
    return SnapshotView(
        site=site,
        now=now,
        step_starts=starts,
        step_ends=ends,
        snapshot=snapshot,
        notes=tuple(notes),
        input_version=_digest(site.site_id, now, snapshot),
    )


def _fill(values: list[Lookup | None], default: float | None = None) -> np.ndarray:
    """Forward-fill missing values (hold last); leading gaps take ``default`` or the first value."""
    known = [v.value for v in values if v is not None]
    last = default if default is not None else (known[0] if known else 0.0)
    out = []
    for value in values:
        last = value.value if value is not None else last
        out.append(last)
    return np.asarray(out, dtype=float)


def _signal_curves(
    state: FleetState,
    site: SiteConfig,
    starts: tuple[datetime, ...],
    ends: tuple[datetime, ...],
    hours: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the tightest import cap (MW, +inf when none) and the expected peak charge.

    A coincident-peak alert without a MW number carries its expected charge as
    ``incentive_usd_per_mwh``: it prices import during the alert instead of capping it.
    """
    caps = np.full(len(starts), np.inf)
    peaks = np.zeros(len(starts))
    for signal in state.active_signals(site):
        for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
            if signal.interval_end <= start or signal.interval_start >= end:
                continue
            if signal.limit_mw is not None:
                caps[k] = min(caps[k], signal.limit_mw)
            if signal.reduction_mw is not None:
                baseline = _baseline_import_mw(state, site)
                caps[k] = min(caps[k], max(0.0, baseline - signal.reduction_mw))
            if signal.limit_mw is None and signal.reduction_mw is None:
                if signal.signal_type == "coincident_peak":
                    peaks[k] += signal.incentive_usd_per_mwh * hours[k]
                else:
                    # An emergency with no number: keep only the contracted GPU floor running.
                    caps[k] = min(caps[k], site.pue * site.gpu_floor_mw)
    return caps, peaks


def _baseline_import_mw(state: FleetState, site: SiteConfig) -> float:
    telemetry = state.telemetry.get(site.site_id)
    if telemetry is None:
        return site.interconnect_mw
    if telemetry.meter_mw is not None:
        return telemetry.meter_mw
    return telemetry.mining_mw + telemetry.gpu_mw + telemetry.cooling_mw


def _digest(site_id: str, now: datetime, snapshot: SiteSnapshot) -> str:
    digest = hashlib.sha256(f"{site_id}|{now.isoformat()}".encode())
    for name in snapshot.__slots__:
        value = getattr(snapshot, name)
        if isinstance(value, np.ndarray):
            digest.update(np.ascontiguousarray(value, dtype=float).tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()[:16]
