"""The input version (the digest of a snapshot, from which decision ids are derived) is pinned:
consumers dedupe on decision ids across restarts and upgrades, so the same inputs must give the
same version bit for bit, from release to release. And any change of any curve changes it.

The snapshots are SYNTHETIC (tests/optimizer/synthetic_snapshots.py). The pinned values are what
the digest gives today: a change of them is a change of every decision id, never a refactoring.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from optimizer.decompose import site_key
from streams.engine.decisions import decision_id
from streams.engine.snapshots import _digest
from tests.optimizer.cases import SPEC
from tests.optimizer.synthetic_snapshots import (
    RESERVE_CURVES,
    SITE_CURVES,
    bare,
    changed_curve,
    changed_reserve_curve,
    full,
)

NOW = datetime(2024, 8, 1, 5, 15, tzinfo=UTC)
PINNED_FULL = "806ee6c7a5e7fb3e"
PINNED_BARE = "21d00c4d66b2a467"


def test_the_digest_of_a_fixed_snapshot_is_pinned() -> None:
    assert _digest("site-a", NOW, full()) == PINNED_FULL
    assert _digest("site-a", NOW, bare()) == PINNED_BARE
    assert decision_id("site-a", NOW, PINNED_FULL) == "7a259f3ac34137021f78fbaba845f8d1"


def test_curves_given_as_other_arrays_keep_the_digest_they_always_had() -> None:
    """A float32 curve is converted to float64 bytes, a non-contiguous one read in order: both
    give the pinned digest when their values are the same. A list was always digested by its
    repr (never an array's bytes), and still is."""
    base = full()
    strided = np.repeat(base.price_usd_per_mwh, 2)[::2]
    assert not strided.flags.c_contiguous
    halves = base.step_hours.astype(np.float32)  # exact in float32
    for changed in (
        dataclasses.replace(base, price_usd_per_mwh=strided),
        dataclasses.replace(base, step_hours=halves),  # type: ignore[arg-type]
    ):
        assert _digest("site-a", NOW, changed) == PINNED_FULL
    as_list = dataclasses.replace(base, ppa_mw=[3.0] * base.n_steps)  # type: ignore[arg-type]
    assert _digest("site-a", NOW, as_list) != PINNED_FULL


@pytest.mark.parametrize("name", SITE_CURVES)
def test_one_ulp_in_any_curve_changes_the_version_and_the_key(name: str) -> None:
    changed = changed_curve(name)
    assert _digest("site-a", NOW, changed) != PINNED_FULL
    assert site_key(SPEC, changed) != site_key(SPEC, full())


@pytest.mark.parametrize("name", [n for n in SITE_CURVES if getattr(bare(), n) is None])
def test_an_optional_curve_set_changes_the_version(name: str) -> None:
    present = dataclasses.replace(bare(), **{name: np.zeros(bare().n_steps)})  # type: ignore[arg-type]
    assert _digest("site-a", NOW, present) != PINNED_BARE


@pytest.mark.parametrize(
    ("product", "name"), [(p, n) for p in sorted(full().reserves) for n in RESERVE_CURVES]
)
def test_any_change_of_any_reserve_curve_changes_the_version_and_the_key(
    product: str, name: str
) -> None:
    changed = changed_reserve_curve(product, name)
    assert _digest("site-a", NOW, changed) != PINNED_FULL
    assert site_key(SPEC, changed) != site_key(SPEC, full())


def test_a_snapshot_replaced_after_its_digest_gets_its_own() -> None:
    """A snapshot made from a digested one by dataclasses.replace is digested from its own
    curves (nothing of the first digest is carried over)."""
    base = full()
    assert _digest("site-a", NOW, base) == PINNED_FULL
    changed = dataclasses.replace(base, price_usd_per_mwh=base.price_usd_per_mwh * 2)
    assert _digest("site-a", NOW, changed) != PINNED_FULL
    assert (
        _digest(
            "site-a", NOW, dataclasses.replace(changed, price_usd_per_mwh=base.price_usd_per_mwh)
        )
        == PINNED_FULL
    )
