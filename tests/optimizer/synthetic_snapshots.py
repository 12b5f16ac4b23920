"""SYNTHETIC site snapshots (hand-made numbers, no data) for the tests of a snapshot's bytes:
the input version's digest and the reuse key of identical sites.

:func:`full` sets every input a snapshot has (every optional curve, two reserve products, one
with its limits and commitment and one without, batch work, the scalars); :func:`bare` only the
required curves. The numbers are exact binary fractions or plain decimals, made by arithmetic
(no random generator), so the same snapshot is built on every machine and numpy version.
:func:`changed_curve` and :func:`changed_reserve_curve` change one curve of :func:`full` by the
least a float can change; the curves are read from the dataclass definitions
(:func:`dataclasses.fields`), not from the code under test, so a curve added later is covered.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from optimizer import BatchJob, ReserveSnapshot, SiteSnapshot

N_STEPS = 6


def _ramp(start: float, step: float) -> np.ndarray:
    return start + step * np.arange(N_STEPS, dtype=float)


def bare() -> SiteSnapshot:
    """Only the required curves; every optional input left at "none"."""
    return SiteSnapshot(
        step_hours=np.array([0.25, 0.25, 0.25, 0.25, 1.0, 1.0]),
        price_usd_per_mwh=np.array([31.5, -4.25, 88.0, 412.75, 55.1, 60.3]),
        carbon_g_per_kwh=_ramp(380.0, 7.5),
        hashprice_usd_per_th_day=np.full(N_STEPS, 0.048),
        gpu_value_usd_per_mwh=np.full(N_STEPS, 1500.0),
        gpu_demand_mw=_ramp(7.0, 0.125),
        gpu_floor_mw=np.full(N_STEPS, 5.0),
        mining_available_mw=np.full(N_STEPS, 25.0),
        signal_cap_mw=np.array([np.inf, np.inf, 18.0, 18.0, np.inf, np.inf]),
    )


def full() -> SiteSnapshot:
    """Every input set, every optional curve present."""
    base = bare()
    return SiteSnapshot(
        step_hours=base.step_hours,
        price_usd_per_mwh=base.price_usd_per_mwh,
        carbon_g_per_kwh=base.carbon_g_per_kwh,
        hashprice_usd_per_th_day=base.hashprice_usd_per_th_day,
        gpu_value_usd_per_mwh=base.gpu_value_usd_per_mwh,
        gpu_demand_mw=base.gpu_demand_mw,
        gpu_floor_mw=base.gpu_floor_mw,
        mining_available_mw=base.mining_available_mw,
        signal_cap_mw=base.signal_cap_mw,
        carbon_price_usd_per_t=42.0,
        onsite_cfe_mw=_ramp(0.0, 0.5),
        ppa_mw=np.full(N_STEPS, 3.0),
        peak_cost_usd_per_mw=np.array([0.0, 0.0, 0.0, 120.0, 0.0, 0.0]),
        mining_now_mw=12.5,
        battery_soc_mwh=2.25,
        batch_jobs=(BatchJob(energy_mwh=4.0, deadline_step=4, max_mw=2.0),),
        reserves={
            "regup": ReserveSnapshot(price_usd_per_mw_h=_ramp(9.0, 0.25)),
            "ecrs": ReserveSnapshot(
                price_usd_per_mw_h=_ramp(6.5, -0.5),
                max_mw=np.array([2.0, 2.0, 0.0, np.inf, np.inf, np.inf]),
                committed_mw=np.array([1.5, 1.5, 0.0, 0.0, 0.0, 0.0]),
            ),
        },
        reserve_deployed_mw=np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    )


def _array_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and "FloatArray" in str(f.type))


#: Every per-step curve of a site snapshot and of a reserve product, from their definitions.
SITE_CURVES = _array_fields(SiteSnapshot)
RESERVE_CURVES = _array_fields(ReserveSnapshot)


def _one_ulp_up(curve: np.ndarray) -> np.ndarray:
    """The same curve with its first finite value one unit in the last place higher (the
    smallest change a float can show)."""
    out = np.array(curve, dtype=float)
    k = int(np.argmax(np.isfinite(out)))
    out[k] = np.nextafter(out[k], np.inf)
    return out


def changed_curve(name: str) -> SiteSnapshot:
    """:func:`full` with one step of curve ``name`` one ulp higher."""
    base = full()
    changes = {name: _one_ulp_up(getattr(base, name))}
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def changed_reserve_curve(product: str, name: str) -> SiteSnapshot:
    """:func:`full` with reserve ``product``'s curve ``name`` one ulp higher, or set (to zeros)
    where it was absent."""
    base = full()
    reserve = base.reserves[product]
    value = getattr(reserve, name)
    curve = np.zeros(N_STEPS) if value is None else _one_ulp_up(value)
    reserves = {**base.reserves, product: dataclasses.replace(reserve, **{name: curve})}
    return dataclasses.replace(base, reserves=reserves)
