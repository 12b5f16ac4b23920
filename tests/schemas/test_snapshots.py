"""Contract drift shows in review: the JSON Schema of every topic must equal its snapshot.

After an intended contract change run `make schemas` and commit the new snapshots.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import TOPICS, json_schemas
from streams.cli import main

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("topic", [t.name for t in TOPICS])
def test_schema_matches_snapshot(topic: str) -> None:
    snapshot = json.loads((SNAPSHOTS / f"{topic}.schema.json").read_text())
    assert json_schemas()[topic] == snapshot, f"{topic} drifted: run `make schemas` if intended"


def test_every_topic_has_exactly_one_snapshot() -> None:
    on_disk = sorted(p.name for p in SNAPSHOTS.glob("*.schema.json"))
    assert on_disk == sorted(f"{t.name}.schema.json" for t in TOPICS)


def test_cli_writes_the_same_schemas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path / "out")]) == 0
    for topic in TOPICS:
        written = (tmp_path / "out" / f"{topic.name}.schema.json").read_text()
        assert written == (SNAPSHOTS / f"{topic.name}.schema.json").read_text()
    assert len(capsys.readouterr().out.splitlines()) == len(TOPICS)
