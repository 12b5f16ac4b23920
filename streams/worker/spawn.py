"""Starting ``gridshift worker`` as a child process with its settings given explicitly (tests,
benchmarks, supervisors): the parent's own ``GRIDSHIFT_*`` variables are dropped, so nothing
leaks in from the calling shell."""

from __future__ import annotations

import os
import subprocess
import sys


def worker_env(**settings: object) -> dict[str, str]:
    """This process's environment without ``GRIDSHIFT_*``, plus ``settings`` as variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    for name, value in settings.items():
        env[f"GRIDSHIFT_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def spawn_worker(**settings: object) -> subprocess.Popen[bytes]:
    """``gridshift worker`` with these settings (keyword = setting name), output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=worker_env(**settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
