"""GPU power caps through NVML: on a real GPU host (skipped where NVML or a GPU is missing, as
on the development machines and CI) read the board limits, set each cap to the limit it already
has (no change to the host), read power and utilisation back; and, anywhere, the even, clamped
split of a site's GPU MW over the boards."""

from __future__ import annotations

import pytest

from streams.agent.config import NvmlConfig
from streams.agent.gpus import NvmlGpus, _pynvml, nvml_unavailable
from tests.agent.decisions import decision

REASON = nvml_unavailable()


@pytest.mark.skipif(REASON is not None, reason=f"needs an NVIDIA GPU: {REASON}")
async def test_caps_follow_the_decided_gpu_mw_within_board_limits() -> None:
    gpus = NvmlGpus(NvmlConfig(share_of_site=1.0))
    await gpus.open()
    try:
        pynvml = _pynvml()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        current = [pynvml.nvmlDeviceGetPowerManagementLimit(h) for h in handles]
        # A site GPU MW equal to the sum of today's limits maps every board to its own limit
        # when they are equal; clamping keeps every cap inside the board's range regardless.
        site_mw = sum(current) / 1000.0 / 1e6
        caps = gpus.caps_mw(site_mw)
        for cap, (low, high) in zip(caps, gpus._limits_mw, strict=True):
            assert low <= cap <= high
        if len(set(current)) == 1:
            await gpus.apply(decision("site-a", mining_mw=0.0, gpu_mw=site_mw))
            assert [pynvml.nvmlDeviceGetPowerManagementLimit(h) for h in handles] == current
        reading = await gpus.read()
        assert reading.count == len(handles) and reading.watts > 0
        assert 0.0 <= reading.utilization_pct <= 100.0
    finally:
        await gpus.close()


def test_caps_are_shared_evenly_and_clamped() -> None:
    gpus = NvmlGpus(NvmlConfig(share_of_site=0.5, board_fraction=0.5))
    gpus._handles = [object(), object()]
    gpus._limits_mw = [(100_000, 700_000), (100_000, 700_000)]
    # 2 MW site GPU x 0.5 share x 0.5 board = 0.5 MW over two boards -> clamped to 700 W each.
    assert gpus.caps_mw(2.0) == [700_000, 700_000]
    # 400 W x 0.25 = 100 W over two boards = 50 W each -> the 100 W floor.
    assert gpus.caps_mw(0.0004) == [100_000, 100_000]
