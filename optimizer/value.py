"""Money and emissions of a dispatch, one function per term.

Each term is linear in MW, so the same function gives the LP coefficient (value of 1 MW over a
step) and the realised value of a plan: the optimizer and any report can never disagree.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_JOULES_PER_MWH = 3.6e9
_SECONDS_PER_DAY = 86_400.0


def mining_revenue_usd_per_mwh(
    hashprice_usd_per_th_day: FloatArray | float, miner_efficiency_j_per_th: float
) -> FloatArray | float:
    """Revenue of one MWh fed to miners: hashprice x TH/s per MW, per hour.

    1 MW at e J/TH computes 1e6/e TH/s; over a day that earns hashprice x 1e6/e dollars,
    i.e. hashprice x 1e6 / (e x 24) per MWh.
    """
    th_per_mwh_day = _JOULES_PER_MWH / miner_efficiency_j_per_th / _SECONDS_PER_DAY
    return np.multiply(hashprice_usd_per_th_day, th_per_mwh_day)


def carbon_cost_usd_per_mwh(
    intensity_g_per_kwh: FloatArray, carbon_price_usd_per_t: float
) -> FloatArray:
    """Carbon price applied to grid energy: g/kWh is kg/MWh, so $/t x g/kWh / 1000 is $/MWh."""
    return np.asarray(intensity_g_per_kwh, dtype=float) * carbon_price_usd_per_t / 1000.0


def energy_cost_usd(import_mw: FloatArray, hours: FloatArray, price: FloatArray) -> FloatArray:
    """Energy bought at the node price per step (negative prices pay the site)."""
    return import_mw * hours * price


def emissions_kg(import_mw: FloatArray, hours: FloatArray, intensity: FloatArray) -> FloatArray:
    """Location-based emissions per step: grid intensity (g/kWh = kg/MWh) x MWh imported."""
    return import_mw * hours * intensity


def reserve_revenue_usd(
    reserve_mw: FloatArray | float, hours: FloatArray, price_usd_per_mw_h: FloatArray
) -> FloatArray:
    """Capacity payment for reserve held: MW x hours x the clearing price ($/MW per hour).

    Paid for being ready to curtail, whether or not a deployment comes; a deployment's energy
    is not bought, which the energy term already counts (the curtailed load draws nothing).
    """
    revenue: FloatArray = np.multiply(reserve_mw, hours) * np.asarray(
        price_usd_per_mw_h, dtype=float
    )
    return revenue
