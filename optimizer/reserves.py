"""Reserve co-optimization: capacity held ready to curtail, sold per product, MW and hour.

A flexible load qualified as a reserve resource (an ERCOT Load Resource, say) is paid the
capacity price for every MW it holds ready to curtail. Mining is the only curtailable load of a
site (the firm GPU load is not), so per site and step:

- ``reserve_p >= 0`` for each product ``p`` of the site's spec, ``reserve_p <= max_p`` (what
  may be offered in that step, within the qualified maximum);
- ``sum_p reserve_p <= mining + deployed``: held reserve is mining that keeps running, except
  while a deployment has already curtailed it (those MW are the reserve being delivered);
- ``reserve_p + shortfall_p >= committed_p``: what was sold is held, or the shortfall is
  penalised (tier 3 of the fleet model's scheme: above anything breaking it could gain, below
  the GPU floor and grid signals), so a commitment never makes the problem infeasible;
- ``reserve_p[t] = reserve_p[t-1]`` where step t is sold in the same market interval as step
  t-1 (``same_sale_as_previous``: 15-minute steps of an hourly reserve market): the market
  sells an hour, not its quarters;
- value ``price_p x hours x reserve_p``, minus the shortfall's penalty.

Which hours are open, sold or closed is the stream shell's rule; this part only reads the
per-step maximum, commitment and price it is given. Shape: one column block per (site,
product) slot, fixed by the spec; every input is a flat vector parameter (DPP).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from optimizer.components import Contribution, Layout, block_rows, clean
from optimizer.errors import SpecError
from optimizer.params import set_value
from optimizer.snapshot import SiteSnapshot
from optimizer.spec import FleetSpec
from optimizer.value import FloatArray, reserve_revenue_usd

#: The least a MWh of committed reserve not held costs (tier 3), $/MWh.
RESERVE_COMMIT_PENALTY_USD_PER_MWH = 5.0e4


class Reserves:
    """Reserve held per (site, product) slot and step, coupled to the site's mining."""

    def __init__(self, spec: FleetSpec, layout: Layout, mining: cp.Variable) -> None:
        t, slots, sites = layout.n_steps, layout.reserve_slots, layout.reserve_sites
        n = len(slots) * t
        self.spec, self.layout = spec, layout
        owner = {site: k for k, site in enumerate(sites)}
        self.held_mw = cp.Variable(n, nonneg=True, name="reserve_mw")
        self.shortfall = cp.Variable(n, nonneg=True, name="reserve_commit_shortfall_mw")
        self.max_mw = cp.Parameter(n, nonneg=True, name="reserve_max_mw")
        self.committed = cp.Parameter(n, nonneg=True, name="reserve_committed_mw")
        self.value = cp.Parameter(n, nonneg=True, name="reserve_usd_per_mw_step")
        self.penalty = cp.Parameter(n, nonneg=True, name="reserve_shortfall_usd_per_mw_step")
        self.deployed = cp.Parameter(len(sites) * t, nonneg=True, name="reserve_deployed_mw")
        self.tied = cp.Parameter(n, nonneg=True, name="reserve_same_sale_as_previous")
        # Each slot's step t-1 onto its step t (nothing onto a slot's first step).
        previous = sp.kron(sp.eye(len(slots)), sp.eye(t, k=-1), format="csr")
        # Slots -> their site's rows (among reserve sites); the reserve sites' mining rows.
        self.to_site = block_rows(tuple(owner[s] for s, _ in slots), len(sites), t)
        self.to_fleet = block_rows(sites, layout.n_sites, t)  # reserve-site rows -> fleet rows
        # Constant per shape: each slot's fleet rows, qualified MW, and its slots per site.
        self._rows = np.concatenate([np.arange(s * t, (s + 1) * t) for s, _ in slots])
        self._qualified = np.repeat(
            [next(r.max_mw for r in spec.sites[s].reserves if r.product == p) for s, p in slots],
            t,
        )
        self._slots_of: dict[int, list[tuple[int, str]]] = {}
        for k, (site, product) in enumerate(slots):
            self._slots_of.setdefault(site, []).append((k, product))
        # Per slot and step, as last assigned: the revenue read-back uses the objective's term.
        self._hours, self._price = np.zeros(n), np.zeros(n)
        self.contribution = Contribution(
            constraints={
                "reserve_max": self.held_mw <= self.max_mw,
                "reserve_mining": self.to_site @ self.held_mw - self.to_fleet.T @ mining
                <= self.deployed,
                "reserve_commitment": self.held_mw + self.shortfall >= self.committed,
                "reserve_same_sale": cp.multiply(self.tied, self.held_mw - previous @ self.held_mw)
                == 0,
            },
            objective=self.value @ self.held_mw - self.penalty @ self.shortfall,
        )

    def assign(
        self, snaps: list[SiteSnapshot], hours: FloatArray, penalty_usd_per_mwh: FloatArray
    ) -> None:
        """Write prices, limits and commitments; ``penalty_usd_per_mwh`` is per fleet row."""
        t, lay = self.layout.n_steps, self.layout
        price, limit, committed, tied = [], [], [], []
        for site, slots in self._slots_of.items():
            spec, reserves = self.spec.sites[site], snaps[site].reserves
            if len(reserves) != len(slots) or any(p not in reserves for _, p in slots):
                extra = sorted(set(reserves) - set(spec.reserve_products))
                missing = [p for _, p in slots if p not in reserves]
                product, problem = (
                    (missing[0], "missing from the snapshot")
                    if missing
                    else (extra[0], "not a reserve product of the site's spec")
                )
                raise SpecError(f"sites.{spec.site_id}.reserves.{product}", problem)
            for _, product in slots:
                reserve = reserves[product]
                price.append(reserve.price_usd_per_mw_h)
                # No limit given: the qualified MW (the minimum below applies it).
                limit.append(np.full(t, np.inf) if reserve.max_mw is None else reserve.max_mw)
                committed.append(
                    np.zeros(t) if reserve.committed_mw is None else reserve.committed_mw
                )
                same = reserve.same_sale_as_previous
                tied.append(np.zeros(t) if same is None else same)
        stacked = [np.concatenate(curves).astype(float) for curves in (price, limit, committed)]
        healthy = (
            all(a.shape == self._rows.shape for a in stacked)
            and all(bool((a >= 0).all()) for a in stacked)
            and all(bool(np.isfinite(a).all()) for a in (stacked[0], stacked[2]))
        )
        if not healthy:
            for site, slots in self._slots_of.items():  # name the culprit
                for _, product in slots:
                    snaps[site].reserves[product].validate(
                        t, f"sites.{self.spec.sites[site].site_id}.reserves.{product}."
                    )
        self._hours, self._price = hours[self._rows], stacked[0]
        set_value(self.value, reserve_revenue_usd(1.0, self._hours, self._price))
        set_value(self.max_mw, np.minimum(stacked[1], self._qualified))
        set_value(self.committed, stacked[2])
        ties = np.concatenate(tied).astype(float)
        if (
            ties.shape != self._rows.shape
            or not np.isin(ties, (0.0, 1.0)).all()
            or (t and ties[::t].any())
        ):
            for site, slots in self._slots_of.items():  # name the culprit
                for _, product in slots:
                    snaps[site].reserves[product].validate(
                        t, f"sites.{self.spec.sites[site].site_id}.reserves.{product}."
                    )
        set_value(self.tied, ties)
        set_value(self.penalty, self._hours * penalty_usd_per_mwh[self._rows])
        set_value(
            self.deployed,
            np.concatenate(
                [snaps[site].curve("reserve_deployed_mw") for site in lay.reserve_sites]
            ),
        )

    # ------------------------------------------------------------------ read-back
    def held(self) -> FloatArray:
        """Reserve held per slot and step, read once per plan."""
        return clean(self.held_mw.value)

    def by_product(self, position: int, held: FloatArray) -> dict[str, FloatArray]:
        """A site's share of :meth:`held`, by product (empty without reserve products)."""
        t = self.layout.n_steps
        return {p: held[k * t : (k + 1) * t] for k, p in self._slots_of.get(position, ())}

    def per_fleet_row(self, per_slot: FloatArray) -> FloatArray:
        """A per-slot quantity summed per site, on the fleet's rows (zeros for other sites)."""
        return np.asarray(self.to_fleet @ (self.to_site @ per_slot), dtype=float)

    def revenue_usd(self, held: FloatArray) -> FloatArray:
        """Capacity revenue per fleet row (site and step), from the same term as the objective."""
        return self.per_fleet_row(reserve_revenue_usd(held, self._hours, self._price))

    def shortfall_mw(self) -> FloatArray:
        """Committed reserve not held, per fleet row (all products of the site)."""
        return self.per_fleet_row(clean(self.shortfall.value))

    def coupling(self, held: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per fleet row: reserve held (all products) and the slack of ``sum reserve <= mining +
        deployed`` (zeros off reserve sites)."""
        slack = -np.atleast_1d(self.contribution.constraints["reserve_mining"].expr.value)
        return self.per_fleet_row(held), np.asarray(self.to_fleet @ slack, dtype=float)
