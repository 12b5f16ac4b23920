"""The report tells each kind of decision note in words: no kind the engine writes about prices,
reserve or the PPA reaches the reader as a template with ``#`` for its numbers."""

from __future__ import annotations

import pytest

from streams.backtest.notes import note_kind, tell

ENGINE_NOTES = (
    "reserve: 3 of 24 steps in hours sold day-ahead, 10 open to sell (hours starting 14 h or "
    "more ahead), 11 closed unsold",
    "price: 20 of 24 steps from the day-ahead forecast, corrected by its error at the last "
    "real-time price",
    "reserve price ecrs: 5 steps from the same hour a day earlier, 3 held at the last known "
    "price (no day-ahead clearing price yet)",
    "price: 4 of 24 steps held at the last known value",
    "ppa: 13 of 24 steps at the flat ppa_mw 60.0 MW (no PPA supply event covers them)",
    "carbon: 3 of 4 steps held at the last known value for ERCOT",
    "economics not estimated (fallback): money and emissions reported as 0",
)


@pytest.mark.parametrize("note", ENGINE_NOTES)
def test_engine_notes_are_told_in_words(note: str) -> None:
    told = tell(note_kind(note))
    assert "#" not in told, told
