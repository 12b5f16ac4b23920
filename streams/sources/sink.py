"""Where ISO load and load forecasts go: an append-only JSON-lines file per ISO, not a topic.

The wire contract has no load topic, and adding one needs the lead's decision, so load travels
as files for now: one line per interval (and per forecast vintage), de-duplicated by the same
checkpoint as the events, written and fsynced before the checkpoint moves. (The live 4CP
source, :mod:`streams.sources.coincident_peak`, asks gridstatus itself at its issue time rather
than reading these files.) A ``grid.load.v1`` topic can later be fed from the same rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class LoadRow(BaseModel):
    """One line of a load file: system load (or its forecast) of an ISO over one interval."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    iso: str
    kind: Literal["load", "load_forecast"]
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    # PJM's RTO peaks above 150 GW; the contract's 100 GW bound for one site does not apply.
    load_mw: float = Field(ge=0.0, le=1_000_000.0)
    #: When the forecast was published (its vintage); ``None`` for measured load.
    published_at: AwareDatetime | None = None
    source: str = "gridstatus"


class JsonlSink:
    """Appends rows to one file, durably (flushed and fsynced before :meth:`write` returns)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, rows: Iterable[BaseModel]) -> int:
        """Append ``rows``; return how many were written."""
        lines = [row.model_dump_json() + "\n" for row in rows]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        return len(lines)
