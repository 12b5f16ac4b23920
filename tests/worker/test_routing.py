"""Routing fleet-level inputs to site partitions: the framing round-trips, sites are grouped by
the partition Kafka's default partitioner gives their key, and ownership follows partitions."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.worker.routing import (
    RoutingError,
    by_partition,
    frame,
    owned_sites,
    partition_of,
    unframe,
)

SITES = [f"site-{i:03d}" for i in range(40)]


def test_frame_round_trips_the_original_bytes_untouched() -> None:
    raw = b'{"node": "HB_SOUTH", "note": "a\\u0000b, c"}'
    topic, sites, back = unframe(frame("grid.price.v1", ["site-001", "site-007"], raw))
    assert (topic, sites, back) == ("grid.price.v1", frozenset({"site-001", "site-007"}), raw)


@pytest.mark.parametrize("value", [None, b"", b"no-separator", b"not.a.topic\x00a\x00{}"])
def test_a_routed_record_without_a_known_topic_is_refused(value: bytes | None) -> None:
    with pytest.raises(RoutingError):
        unframe(value)


def test_sites_group_by_the_partition_their_key_lands_on() -> None:
    every = list(range(4))
    partitioner = DefaultPartitioner()
    grouped = by_partition(SITES, 4)
    assert sorted(s for group in grouped.values() for s in group) == SITES
    for partition, group in grouped.items():
        for site in group:
            assert partition_of(site, 4) == partition == partitioner(site.encode(), every, every)


def test_ownership_splits_the_fleet_without_overlap() -> None:
    first = owned_sites(SITES, 4, {0, 1})
    second = owned_sites(SITES, 4, {2, 3})
    assert first and second
    assert not first & second
    assert first | second == set(SITES)
