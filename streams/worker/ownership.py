"""Which sites this worker decides, following the consumer group's partition assignment.

faust assigns partitions co-partitioned across topics, so the partitions of the routed topic a
worker holds say which sites are its own. On every assignment the planner is told; partitions
gained after the first assignment (another worker left) are first caught up from the committed
history of their site-keyed inputs, so the sites arrive with their telemetry, not empty.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams.worker.replanner import Replanner
from streams.worker.routing import owned_sites

log = logging.getLogger(__name__)

CatchUp = Callable[[frozenset[int]], Awaitable[int]]
Follow = Callable[[frozenset[int]], Awaitable[None]]


@dataclass
class Ownership:
    """Reacts to faust's ``on_partitions_assigned`` signal."""

    site_ids: tuple[str, ...]
    partitions: int
    routed_topic: str
    planner: Replanner
    catch_up: CatchUp | None = None
    follow: Follow | None = None  # told the held partition numbers (the telemetry lane)
    held: frozenset[int] | None = None

    @property
    def sites(self) -> frozenset[str]:
        return self.planner.owned if self.planner.owned is not None else frozenset()

    async def on_assigned(self, sender: Any, /, *args: Any, **_: Any) -> None:
        assigned: Iterable[Any] = args[0] if args else ()
        held = frozenset(tp.partition for tp in assigned if tp.topic == self.routed_topic)
        gained = held - (self.held or frozenset()) if self.held is not None else frozenset()
        self.held = held
        sites = owned_sites(self.site_ids, self.partitions, held)
        if not gained:
            # Before any await: inputs read from here on already see who owns what, so a
            # fleet-level input is never decided locally ahead of one still being routed.
            self.planner.own(sites)
        if gained and self.catch_up is not None:
            caught = await self.catch_up(gained)
            log.info(
                "caught up gained partitions",
                extra={"partitions": sorted(gained), "events": caught},
            )
        if self.follow is not None:
            await self.follow(held)
        self.planner.own(sites)
        log.info(
            "partitions assigned",
            extra={"routed": sorted(held), "sites_owned": len(sites), "sites": len(self.site_ids)},
        )
