"""Miner drivers: read a miner's power and hashrate, set its power target, pause and resume it.

The real driver is :class:`AsicRsMiner`, on asic-rs through its Python bindings (``pyasic_rs``),
the maintained successor of pyasic (docs/AGENT.md says why). asic-rs identifies the make and
firmware itself (RPC on port 4028 and the web root on port 80: the ports are fixed by the
library), so a miner is configured by IP address only.

Every call is bounded by a timeout. A call that times out or cannot connect raises
:class:`MinerUnreachable`; a miner that answers but will not take a power target returns
``False`` from :meth:`MinerDriver.set_power_limit` (the caller then drives it on/off only).
Must not decide set-points: that is ``allocation`` and ``controller``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from streams.agent.config import MinerConfig
from streams.errors import GridshiftError

if TYPE_CHECKING:
    from pyasic_rs import Miner

log = logging.getLogger(__name__)

T = TypeVar("T")


class MinerUnreachable(GridshiftError):  # noqa: N818 - a state of the miner, read as such
    """The miner did not answer (time-out, refused connection, not identified)."""


@dataclass(frozen=True, slots=True)
class MinerReading:
    """What one miner reported."""

    watts: float
    hashrate_th_s: float

    @property
    def mining(self) -> bool:
        """Hashing now (a paused miner reports no hashrate)."""
        return self.hashrate_th_s > 0.0


class MinerDriver(Protocol):
    """The four things the agent asks of a miner."""

    config: MinerConfig

    async def read(self) -> MinerReading:
        """Power and hashrate now; :class:`MinerUnreachable` when it does not answer."""
        ...

    async def set_power_limit(self, watts: float) -> bool:
        """Ask for a power target; ``False`` when the miner refuses it."""
        ...

    async def pause(self) -> bool:
        """Stop hashing (idle power only)."""
        ...

    async def resume(self) -> bool:
        """Start hashing again."""
        ...


def asic_rs_available() -> str | None:
    """``None`` when pyasic-rs can be imported, else why not (for errors and test skips)."""
    try:
        import pyasic_rs  # noqa: F401, PLC0415 - optional extra, imported on use
    except ImportError as exc:
        return f"pyasic-rs is not installed ({exc}): pip install 'gridshift[agent]'"
    return None


class AsicRsMiner:
    """A miner driven through asic-rs (``pyasic_rs``), identified on first use."""

    def __init__(
        self, config: MinerConfig, *, timeout_s: float, discovery_timeout_s: float
    ) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.discovery_timeout_s = discovery_timeout_s
        self._miner: Miner | None = None

    def __repr__(self) -> str:
        return f"AsicRsMiner({self.config.label})"

    async def _handle(self) -> Miner:
        """The library's miner object; identified once, again after it stopped answering."""
        if self._miner is not None:
            return self._miner
        from pyasic_rs import MinerFactory  # noqa: PLC0415 - optional extra

        factory = MinerFactory().with_identification_timeout_secs(
            max(1, round(self.discovery_timeout_s))
        )
        miner = await self._bounded(factory.get_miner(self.config.host), self.discovery_timeout_s)
        if miner is None:
            raise MinerUnreachable(f"{self.config.label}: no supported miner answered")
        if self.config.username is not None and self.config.password is not None:
            miner.set_auth(self.config.username, self.config.password.get_secret_value())
        log.info(
            "miner identified",
            extra={"miner": self.config.label, "make": miner.make, "model": miner.model},
        )
        self._miner = miner
        return miner

    async def _bounded(self, call: Awaitable[T], timeout_s: float | None = None) -> T:
        try:
            return await asyncio.wait_for(call, timeout_s or self.timeout_s)
        except TimeoutError as exc:
            raise MinerUnreachable(f"{self.config.label}: no answer within the timeout") from exc

    async def read(self) -> MinerReading:
        miner = await self._handle()
        # asic-rs returns None (not an error) when the miner does not answer a data call.
        watts = await self._bounded(miner.get_wattage())
        if watts is None:
            self._miner = None  # identify again next time: it may have been replaced
            raise MinerUnreachable(f"{self.config.label}: no power reading")
        hashrate = await self._bounded(miner.get_hashrate())
        return MinerReading(watts=float(watts), hashrate_th_s=_terahash(hashrate))

    async def set_power_limit(self, watts: float) -> bool:
        miner = await self._handle()
        if not miner.supports_set_power_limit:
            return False
        return await self._command(miner.set_power_limit(watts))

    async def pause(self) -> bool:
        miner = await self._handle()
        return await self._command(miner.pause(0))

    async def resume(self) -> bool:
        miner = await self._handle()
        return await self._command(miner.resume(0))

    async def _command(self, call: Awaitable[bool]) -> bool:
        """A control call: ``True``/``False`` as the miner answered. An error status raises in
        asic-rs as it does for a dropped connection, so a failed call is told apart by asking
        the miner something harmless: answers = refused, silent = unreachable."""
        try:
            return bool(await self._bounded(call))
        except RuntimeError as exc:
            try:
                await self.read()
            except MinerUnreachable:
                raise MinerUnreachable(f"{self.config.label}: {exc}") from exc
            log.warning("miner refused a command", extra={"miner": self.config.label})
            return False


def _terahash(hashrate: object) -> float:
    """TH/s of an asic-rs ``HashRate`` (``None`` = not reported = 0)."""
    if hashrate is None:
        return 0.0
    from pyasic_rs.data import HashRate, HashRateUnit  # noqa: PLC0415 - optional extra

    if not isinstance(hashrate, HashRate):
        return 0.0
    return max(0.0, float(hashrate.into_unit(HashRateUnit.TeraHash).value))


def drivers_for(
    miners: tuple[MinerConfig, ...], *, timeout_s: float, discovery_timeout_s: float
) -> list[MinerDriver]:
    """An asic-rs driver per configured miner (a clear error when the library is missing)."""
    if not miners:
        return []
    missing = asic_rs_available()
    if missing is not None:
        raise GridshiftError(missing)
    return [
        AsicRsMiner(m, timeout_s=timeout_s, discovery_timeout_s=discovery_timeout_s) for m in miners
    ]
