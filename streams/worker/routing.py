"""Site-keyed repartitioning, so several workers can share a fleet.

A worker decides the sites whose partition it owns. Telemetry and compute demand are keyed by
site already; prices (by node), carbon (by region), grid signals and hashprice are not. The
ingest agent that reads such an event forwards it to every site it concerns as a *routed*
record on an internal topic keyed by site id (Kafka Streams' repartition topic). All topics have
the same partition count and the same (murmur2) partitioner, so faust's co-partitioned
assignment hands a site's telemetry and its routed records to the same worker.

That holds only if producers partition site-keyed inputs the same way: by murmur2 of the site
id, the Java client's (and aiokafka's) default. librdkafka clients (confluent-kafka, Go, .NET,
Rust) default to CRC32 (``consistent_random``), and a key that is not the payload's ``site_id``
(or none) lands anywhere too. Such an input read by a worker that does not own its site is
forwarded like a fleet-level input: one routed record to the owner's partition, the input
committed once it is delivered (``streams/worker/agents.py``, ``streams/worker/telemetry.py``).
It costs a hop, and is counted (``gridshift_inputs_forwarded_total{topic}``).

An input goes out as one routed record per destination partition, not per site (a hub price
for 100 sites on 4 partitions is 4 records): the value is the source topic's contract name, the
comma-separated site ids it concerns on that partition, and the original bytes unchanged (no
re-encoding on the hot path), separated by NUL bytes; the key is the first of those site ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.partitioner import DefaultPartitioner

from schemas import ROUTED_TOPIC, TOPICS_BY_NAME

# ROUTED_TOPIC is re-exported (its name lives in schemas): the worker names it from here.
__all__ = [
    "ROUTED_TOPIC",
    "RoutingError",
    "by_partition",
    "frame",
    "owned_sites",
    "partition_of",
    "unframe",
]

_SEP = b"\x00"
_partitioner = DefaultPartitioner()


class RoutingError(ValueError):
    """A routed record that does not name a contract topic."""


def frame(topic: str, sites: Iterable[str], raw: bytes) -> bytes:
    """The routed record value for ``raw`` (read from contract topic ``topic``) to ``sites``."""
    return topic.encode() + _SEP + ",".join(sites).encode() + _SEP + raw


def unframe(value: bytes | None) -> tuple[str, frozenset[str], bytes]:
    """``(contract topic, sites, original bytes)`` of a routed record value."""
    name, sep, rest = (value or b"").partition(_SEP)
    sites, sep2, raw = rest.partition(_SEP)
    topic = name.decode(errors="replace")
    if not (sep and sep2) or topic not in TOPICS_BY_NAME:
        raise RoutingError(f"routed record without a known source topic: {topic[:60]!r}")
    return topic, frozenset(sites.decode(errors="replace").split(",")), raw


def by_partition(sites: Iterable[str], partitions: int) -> dict[int, list[str]]:
    """``sites`` grouped by the partition their records land on (sorted, for stable records)."""
    grouped: dict[int, list[str]] = {}
    for site in sorted(sites):
        grouped.setdefault(partition_of(site, partitions), []).append(site)
    return grouped


def partition_of(site_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``site_id``."""
    every = list(range(partitions))
    partition: int = _partitioner(site_id.encode(), every, every)
    return partition


def owned_sites(
    site_ids: Iterable[str], partitions: int, assigned: Iterable[int]
) -> frozenset[str]:
    """The sites whose records land on the ``assigned`` partitions."""
    mine = set(assigned)
    return frozenset(s for s in site_ids if partition_of(s, partitions) in mine)
