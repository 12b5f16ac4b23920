"""The AsyncAPI 3.0 document: generated from the contract, and accepted by the official AsyncAPI
parser from npm (an independent validator)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas import TOPICS
from schemas.asyncapi import asyncapi_document
from streams.cli import main

PARSER = "@asyncapi/parser@3.6.3"
VALIDATOR = Path(__file__).parent / "asyncapi_validate.mjs"


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_topic_is_a_channel_with_its_schema() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {t.name for t in TOPICS}
    for topic in TOPICS:
        channel = document["channels"][topic.name.replace(".", "_")]
        (message_ref,) = channel["messages"].values()
        message = resolve(document, message_ref["$ref"])
        schema = resolve(document, message["payload"]["$ref"])
        assert set(schema["properties"]) == set(topic.model.model_fields)
        action = "receive" if topic.is_input else "send"
        assert f"{action}_{topic.name.replace('.', '_')}" in document["operations"]
    # What a producer in another language must set to land where the worker reads.
    assert "partitioner=murmur2_random" in document["info"]["description"]


def test_cli_writes_the_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "asyncapi.json"
    assert main(["asyncapi", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(asyncapi_document()))


@pytest.fixture(scope="session")
def asyncapi_parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official parser installed from npm into a temporary folder (nothing committed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the independent AsyncAPI validator")
    folder = tmp_path_factory.mktemp("asyncapi-parser")
    done = subprocess.run(
        [
            "npm",
            "install",
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            PARSER,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm could not install {PARSER}: {done.stderr[-500:]}")
    shutil.copy(VALIDATOR, folder / "validate.mjs")
    return folder


def test_the_official_asyncapi_parser_accepts_the_document(
    asyncapi_parser: Path, tmp_path: Path
) -> None:
    document = tmp_path / "asyncapi.json"
    document.write_text(json.dumps(asyncapi_document()))
    done = subprocess.run(
        ["node", "validate.mjs", str(document)],
        cwd=asyncapi_parser,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout
    assert verdict == {"valid": True, "errors": 0, "channels": len(TOPICS)}
