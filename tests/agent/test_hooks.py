"""The replica hook's command form (no broker, no miner library needed): argv run without a
shell, the decided GPU MW and ids in its environment, failures as one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from streams.agent.config import AgentConfig
from streams.agent.gpus import GpuDriverError, ReplicaHook
from tests.agent.decisions import decision

SITE = "site-a"


def hook(*argv: str) -> ReplicaHook:
    config = AgentConfig.parse({"gpu": {"hook": {"command": list(argv), "timeout_s": 5}}}, "t")
    assert config.gpu.hook is not None
    return ReplicaHook(config.gpu.hook)


async def test_command_hook_gets_the_gpu_mw_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "hook.json"
    script = (
        "import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
        "if k.startswith('GRIDSHIFT_')}, open(sys.argv[1], 'w'))"
    )
    await hook(sys.executable, "-c", script, str(out)).apply(
        decision(SITE, mining_mw=1.0, gpu_mw=2.5)
    )
    env = json.loads(out.read_text())
    assert env["GRIDSHIFT_GPU_MW"] == "2.500000" and env["GRIDSHIFT_SITE_ID"] == SITE


async def test_failing_command_is_one_error_with_its_stderr() -> None:
    failing = hook(sys.executable, "-c", "import sys; sys.exit('scaler is down')")
    with pytest.raises(GpuDriverError, match="exited 1: scaler is down"):
        await failing.apply(decision(SITE, mining_mw=1.0, gpu_mw=2.5))
