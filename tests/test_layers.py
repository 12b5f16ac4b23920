"""The import direction of the layers (DESIGN.md): ``optimizer`` and ``schemas`` use nothing of
``streams``; ``optimizer`` not even ``schemas``; inside ``streams`` the engine and the backtest
never reach the worker or a Kafka client, and the SDK stays a light client without faust.

Checked two ways: each module's own import statements (so a violation names its line), and what
importing a layer really loads in a fresh interpreter (so an indirect path is caught too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

KAFKA_CLIENTS = ("aiokafka", "faust", "mode", "confluent_kafka", "kafka")


def modules(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


FORBIDDEN: dict[str, tuple[str, ...]] = {
    "optimizer": ("streams", "schemas", *KAFKA_CLIENTS),
    "schemas": ("streams", "optimizer", *KAFKA_CLIENTS),
    "streams.engine": ("streams.worker", "streams.kafka", "streams.backtest", *KAFKA_CLIENTS),
    "streams.backtest": ("streams.worker", "streams.kafka", *KAFKA_CLIENTS),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_against_the_direction(package: str) -> None:
    bad = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in modules(package)
        for name in sorted(imported(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    ]
    assert not bad, "\n".join(bad)


def loaded_by(*module_names: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after importing ``module_names``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(module_names)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(json.loads(out.stdout))


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_engine_and_backtest_load_no_kafka_client_or_worker() -> None:
    names = [dotted(p) for p in (*modules("streams.engine"), *modules("streams.backtest"))]
    loaded = loaded_by(*names)
    leaked = sorted(
        m for m in loaded if m.split(".")[0] in KAFKA_CLIENTS or m.startswith("streams.worker")
    )
    assert not leaked, leaked


def test_the_sdk_is_a_light_client_without_faust() -> None:
    loaded = loaded_by("streams.sdk")
    heavy = ("faust", "cvxpy", "pandas", "streams.worker", "optimizer")
    assert not [m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)]
