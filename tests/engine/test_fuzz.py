"""Fuzzing the ingest path: thousands of malformed and near-valid messages, none crashes it,
every one ends as exactly the outcome it must have, and valid ones change the plan."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.engine.codec import Rejection
from streams.engine.fleet import Fleet
from streams.engine.ingest import ingest
from streams.engine.state import Applied, FleetState
from tests.engine.fuzzcases import MAX_BYTES, case
from tests.factories import mining_site

FLEET = Fleet(sites=(mining_site(),))
FUZZ_CASES = 1200
SEEN: dict[str, int] = {}


@settings(max_examples=FUZZ_CASES, deadline=None, derandomize=True)
@given(st.randoms(use_true_random=False))
def test_every_message_ends_as_it_must(rng: random.Random) -> None:
    topic, raw, expected = case(rng)
    state = FleetState(FLEET)
    outcome = ingest(state, topic, raw, MAX_BYTES)
    SEEN[expected] = SEEN.get(expected, 0) + 1
    if expected == "ok":
        assert isinstance(outcome, Applied), outcome
        assert outcome.trigger
    else:
        assert isinstance(outcome, Rejection), (topic, raw[:80], expected)
        assert outcome.reason == expected, (outcome, raw[:120])
        assert outcome.error
        assert state.event_clock is None  # a rejected message changes nothing


def test_the_fuzzer_covered_every_outcome() -> None:
    # Runs after the property test in this module (pytest keeps definition order).
    assert sum(SEEN.values()) >= 1000
    assert set(SEEN) == {"ok", "not_json", "schema_violation", "unknown_site", "oversized"}
