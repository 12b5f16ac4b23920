"""Packaging as a user gets it: the wheel, installed into a fresh virtual environment, runs from
another directory. Shipped scenarios and examples are package data (found through
``importlib.resources``, not paths beside a checkout), every direct import is declared (a
missing one fails the install or the run here), and the SDK imports without faust."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO, find_data_dir

pytestmark = pytest.mark.packaging


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDSHIFT_", "PYTHON"))}
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the built wheel and its backtest extra."""
    root = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root, REPO, cwd=root)
    (wheel,) = root.glob("gridshift-*.whl")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[backtest]", cwd=root)
    return root / "venv" / "bin"


def test_the_sdk_imports_from_the_wheel_without_faust(installed: Path, tmp_path: Path) -> None:
    code = (
        "import sys, streams.sdk\n"
        "assert 'faust' not in sys.modules, 'the SDK loaded faust'\n"
        "print(streams.sdk.__file__)"
    )
    where = run(installed / "python", "-c", code, cwd=tmp_path)
    assert str(REPO) not in where  # the installed copy, not the checkout


def test_a_shipped_scenario_runs_from_the_wheel_in_another_directory(
    installed: Path, tmp_path: Path
) -> None:
    data = find_data_dir()
    if data is None:
        pytest.skip("real data folder not found: set GRIDSHIFT_DATA_DIR or put ../shared/data")
    out = run(
        installed / "gridshift", "backtest", "northern-data", "--data-dir", data,
        "--start", "2024-08-18", "--end", "2024-08-19", "--out", tmp_path / "report",
        cwd=tmp_path,
    )  # fmt: skip
    assert "perfect-foresight oracle" in out
    assert (tmp_path / "report" / "report.md").is_file()
    # The example fleet ships too: `gridshift worker --help` and the example path resolve.
    code = "from streams.engine.fleet import example_sites_path; print(example_sites_path())"
    assert run(installed / "python", "-c", code, cwd=tmp_path).strip().endswith("sites.toml")
