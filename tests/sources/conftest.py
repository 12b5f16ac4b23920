"""Fixtures every source test shares."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streams.sources.loop import Source


@pytest.fixture
async def opened() -> AsyncIterator[list[Source]]:
    """Every source a test builds; their producers and feeds are closed at the end."""
    sources: list[Source] = []
    yield sources
    for source in sources:
        await source.out.close()
        for feed in source.feeds:
            await feed.close()
