"""GPU drivers: power caps through NVML on GPU hosts, and a generic hook (HTTP POST or a
command) that scales inference replicas to the decided GPU MW.

NVML calls are short blocking C calls; they run in a worker thread so the event loop never
waits on the driver. The hook is told the site's decided GPU MW (all-in, as decided); how many
replicas that means is the receiver's business. Must not decide set-points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import aiohttp

from schemas import DispatchDecision
from streams.agent.config import HookConfig, NvmlConfig
from streams.errors import GridshiftError

log = logging.getLogger(__name__)


class GpuDriverError(GridshiftError):
    """A GPU driver or hook failed (NVML error, hook refused or timed out)."""


@dataclass(frozen=True, slots=True)
class GpuReading:
    """What this host's GPUs drew and how busy they were."""

    watts: float
    utilization_pct: float
    count: int


def _pynvml() -> Any:
    """The NVML bindings (module ``pynvml`` of the optional ``nvidia-ml-py``), imported on use."""
    # nvidia-ml-py ships no type information; everything it returns is treated as Any here.
    import pynvml  # type: ignore[import-untyped]  # noqa: PLC0415

    return pynvml


def nvml_unavailable() -> str | None:
    """``None`` when NVML can be initialised here, else why not (for errors and test skips)."""
    try:
        pynvml = _pynvml()
    except ImportError as exc:
        return f"nvidia-ml-py is not installed ({exc}): pip install 'gridshift[agent]'"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML is not available on this host (no NVIDIA driver/GPU): {exc}"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML found no GPU on this host"
    finally:
        pynvml.nvmlShutdown()
    return None


class NvmlGpus:
    """Power caps of every GPU on this host, shared evenly, within each board's limits."""

    def __init__(self, config: NvmlConfig) -> None:
        self.config = config
        self._handles: list[Any] = []
        self._limits_mw: list[tuple[int, int]] = []

    async def open(self) -> None:
        """Initialise NVML and read each GPU's allowed power-limit range."""
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        pynvml = _pynvml()
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._limits_mw = [
                tuple(pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)) for h in self._handles
            ]
        except pynvml.NVMLError as exc:
            raise GpuDriverError(f"NVML: {exc}") from exc
        log.info("NVML ready", extra={"gpus": count})

    async def close(self) -> None:
        """Release NVML."""
        if self._handles:
            pynvml = _pynvml()
            await asyncio.to_thread(pynvml.nvmlShutdown)
            self._handles = []

    def caps_mw(self, site_gpu_mw: float) -> list[int]:
        """Per-GPU power limit (NVML milliwatts) for the site's decided GPU MW."""
        if not self._handles:
            return []
        host_w = site_gpu_mw * 1e6 * self.config.share_of_site * self.config.board_fraction
        per_gpu_mw = host_w * 1000.0 / len(self._handles)
        return [int(min(high, max(low, per_gpu_mw))) for low, high in self._limits_mw]

    async def apply(self, decision: DispatchDecision) -> None:
        """Set every GPU's power limit for ``decision.gpu_mw`` (needs root on the host)."""
        caps = self.caps_mw(decision.gpu_mw)
        await asyncio.to_thread(self._set, caps)
        log.info("GPU power caps set", extra={"gpu_mw": decision.gpu_mw, "caps_mw": caps})

    def _set(self, caps: list[int]) -> None:
        pynvml = _pynvml()
        try:
            for handle, cap in zip(self._handles, caps, strict=True):
                pynvml.nvmlDeviceSetPowerManagementLimit(handle, cap)
        except pynvml.NVMLError as exc:
            raise GpuDriverError(f"NVML could not set a power limit: {exc}") from exc

    async def read(self) -> GpuReading:
        """Power draw and utilisation of this host's GPUs."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> GpuReading:
        pynvml = _pynvml()
        try:
            draws = [pynvml.nvmlDeviceGetPowerUsage(h) for h in self._handles]  # milliwatts
            busy = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
        except pynvml.NVMLError as exc:
            raise GpuDriverError(f"NVML could not read the GPUs: {exc}") from exc
        count = len(self._handles)
        return GpuReading(
            watts=sum(draws) / 1000.0,
            utilization_pct=sum(busy) / count if count else 0.0,
            count=count,
        )


class ReplicaHook:
    """Tells an inference scaler the decided GPU MW: POST a JSON body, or run a command."""

    def __init__(self, config: HookConfig) -> None:
        self.config = config

    @staticmethod
    def body(decision: DispatchDecision) -> dict[str, Any]:
        """What the hook receives (JSON for the URL; environment variables for a command)."""
        return {
            "site_id": decision.site_id,
            "gpu_mw": decision.gpu_mw,
            "decision_id": decision.decision_id,
            "interval_start": decision.interval_start.isoformat(),
            "interval_end": decision.interval_end.isoformat(),
            "fallback": decision.fallback,
        }

    async def apply(self, decision: DispatchDecision) -> None:
        """Deliver the decision's GPU MW; :class:`GpuDriverError` when the hook fails."""
        if self.config.url is not None:
            await self._post(decision)
        else:
            await self._run(decision)
        log.info("replica hook called", extra={"gpu_mw": decision.gpu_mw})

    async def _post(self, decision: DispatchDecision) -> None:
        headers = {"Content-Type": "application/json"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    str(self.config.url), data=json.dumps(self.body(decision)), headers=headers
                ) as response,
            ):
                if response.status >= 300:
                    raise GpuDriverError(f"replica hook answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GpuDriverError(f"replica hook failed: {type(exc).__name__}: {exc}") from exc

    async def _run(self, decision: DispatchDecision) -> None:
        assert self.config.command is not None  # the config allows exactly one of url/command
        env = {
            **os.environ,
            "GRIDSHIFT_GPU_MW": f"{decision.gpu_mw:.6f}",
            "GRIDSHIFT_SITE_ID": decision.site_id,
            "GRIDSHIFT_DECISION_ID": decision.decision_id,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *self.config.command,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise GpuDriverError(f"replica hook command failed to start: {exc}") from exc
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), self.config.timeout_s)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise GpuDriverError("replica hook command timed out (killed)") from exc
        if process.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-200:]
            raise GpuDriverError(f"replica hook command exited {process.returncode}: {tail}")
