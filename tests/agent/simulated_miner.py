"""A simulated miner: an AvalonMiner speaking the cgminer JSON-over-TCP API on port 4028.

Not real hardware. It answers exactly what asic-rs (pyasic-rs 0.8) sends to an Avalon (stock
firmware) miner, as read from its sources and observed on the wire:

- one JSON request per connection, ``{"command": "...", "parameter": "..."}``; the reply is one
  JSON object terminated by a NUL byte, then the connection closes (cgminer's API);
- identification: ``version`` (``"PROD"``/``"MODEL"`` containing Avalon) and ``devdetails``;
  asic-rs also GETs ``http://IP/`` (port 80), which nothing here answers (refused), as for an
  Avalon without its web UI;
- data: ``stats`` (``"MM ID0"`` with ``PS[...]``: index 4 is the wall power in W), ``devs``
  (``"MHS 1m"``), ``summary``, ``pools``;
- control: ``ascset`` with ``0,softoff,1:<unix time>`` (pause), ``0,softon,1:<unix time>``
  (resume) and ``0,worklevel,set,<power>`` where asic-rs writes the power as a formatted
  quantity such as ``2.5\\u00a0kW`` (the success reply is ``"Msg": "ASC 0 set OK"``).

asic-rs hard-codes port 4028, so each simulated miner takes its own loopback address
(127.x.y.z, never 127.0.0.x) instead of a free port. Faults for the tests: ``silent`` (reads
the request, never answers: a hung miner), ``refuse_power_target`` (cgminer's
``Access denied`` error status for the worklevel write), and :meth:`stop` (connection refused).
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

PORT = 4028
_SCALE = {"mW": 1e-3, "W": 1.0, "kW": 1e3, "MW": 1e6}
_POWER = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(mW|W|kW|MW)$")


def parse_power(text: str) -> float:
    """Watts of a quantity as asic-rs formats it (``2.5\\u00a0kW``, ``999\\u00a0W``)."""
    match = _POWER.match(text.replace("\u00a0", " ").strip())
    if match is None:
        raise ValueError(f"not a power: {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


@dataclass
class SimulatedMiner:
    """One simulated AvalonMiner 1246 on ``host``:4028."""

    max_w: float = 3000.0
    efficiency_j_per_th: float = 20.0
    running: bool = True
    limit_w: float | None = None
    refuse_power_target: bool = False
    silent: bool = False
    host: str = ""
    #: Every request received, in order: (monotonic time, command, parameter).
    requests: list[tuple[float, str, str | None]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what it draws -----------------------------------------------------------------------

    @property
    def watts(self) -> float:
        """Wall power now: 0 when paused, else its limit (at most max_w)."""
        if not self.running:
            return 0.0
        return min(self.max_w, self.limit_w if self.limit_w is not None else self.max_w)

    @property
    def hashrate_th_s(self) -> float:
        return self.watts / self.efficiency_j_per_th

    def commands(self, name: str) -> list[str | None]:
        """Parameters of every ``name`` request received (e.g. ``ascset``)."""
        return [param for _, command, param in self.requests if command == name]

    def first(self, name: str, prefix: str = "") -> float:
        """When the first ``name`` request whose parameter starts with ``prefix`` arrived."""
        return next(
            t
            for t, command, param in self.requests
            if command == name and (param or "").startswith(prefix)
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, attempts: int = 50) -> str:
        """Listen on a free loopback address at port 4028; returns the address."""
        for _ in range(attempts):
            a, b, c = random.randint(1, 254), random.randint(0, 255), random.randint(1, 254)
            host = f"127.{a}.{b}.{c}"
            try:
                self._server = await asyncio.start_server(self._serve, host, PORT)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self.host = host
            return host
        raise RuntimeError("no free loopback address for a simulated miner")

    async def stop(self) -> None:
        """Stop answering (connections are refused from now on) and drop open connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def changed(self) -> asyncio.Event:
        """Set after every request it answered (or held, when silent)."""
        return self._changed

    # -- the API -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            raw = await reader.read(65_536)
            request = json.loads(raw or b"{}")
            command, parameter = str(request.get("command", "")), request.get("parameter")
            self.requests.append((time.monotonic(), command, parameter))
            self._changed.set()
            if self.silent:
                await reader.read()  # hold the connection open, answer nothing
                return
            reply = self._reply(command, parameter)
            writer.write(json.dumps(reply).encode() + b"\x00")
            await writer.drain()
        except (ConnectionError, json.JSONDecodeError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self._changed.set()

    def _status(self, msg: str, code: int, status: str = "S") -> list[dict[str, Any]]:
        return [
            {
                "STATUS": status,
                "When": int(time.time()),
                "Code": code,
                "Msg": msg,
                "Description": "cgminer 4.11.1",
            }
        ]

    def _reply(self, command: str, parameter: str | None) -> dict[str, Any]:
        if command == "version":
            return {
                "STATUS": self._status("CGMiner versions", 22),
                "VERSION": [
                    {
                        "CGMiner": "4.11.1",
                        "API": "3.7",
                        "PROD": "AvalonMiner 1246-83",
                        "MODEL": "1246-83",
                        "HWTYPE": "MM3v2_X3",
                        "SWTYPE": "MM314",
                        "VERSION": "21042001_4ec6bb0_61407fa",
                        "DNA": "020100008c0a0b18",
                        "MAC": "b4a2eb340a1b",
                    }
                ],
                "id": 1,
            }
        if command == "devdetails":
            return {
                "STATUS": self._status("Device Details", 69),
                "DEVDETAILS": [{"DEVDETAILS": 0, "Name": "AVA10", "ID": 0, "Model": "1246-83"}],
                "id": 1,
            }
        if command == "devs":
            mhs = self.hashrate_th_s * 1e6
            return {
                "STATUS": self._status("1 ASC(s)", 9),
                "DEVS": [
                    {
                        "ASC": 0,
                        "Name": "AVALON",
                        "ID": 0,
                        "Enabled": "Y",
                        "Status": "Alive",
                        "MHS 1m": mhs,
                        "MHS 5s": mhs,
                    }
                ],
                "id": 1,
            }
        if command == "stats":
            w = round(self.watts)
            limit = round(self.limit_w or self.max_w)
            ghs = self.max_w / self.efficiency_j_per_th * 1e3
            mm = (
                f"Ver[1246-83] Elapsed[1000] GHSmm[{ghs:.2f}]"
                f" PS[0 1209 2183 53 {w} {w} {limit}] Led[0] WORKMODE[1]"
                f" SoftOFF[{0 if self.running else 1}]"
            )
            return {
                "STATUS": self._status("CGMiner stats", 70),
                "STATS": [{"STATS": 0, "ID": "AVA100", "Elapsed": 1000, "MM ID0": mm}],
                "id": 1,
            }
        if command == "summary":
            return {
                "STATUS": self._status("Summary", 11),
                "SUMMARY": [{"Elapsed": 1000, "MHS 1m": self.hashrate_th_s * 1e6}],
                "id": 1,
            }
        if command == "pools":
            return {
                "STATUS": self._status("1 Pool(s)", 7),
                "POOLS": [{"POOL": 0, "URL": "stratum+tcp://pool.invalid:3333", "User": "sim"}],
                "id": 1,
            }
        if command == "ascset":
            return self._ascset(parameter or "")
        return {"STATUS": self._status("Invalid command", 14, "E"), "id": 1}

    def _ascset(self, parameter: str) -> dict[str, Any]:
        parts = parameter.split(",")
        if len(parts) >= 2 and parts[1].startswith("softoff"):
            self.running = False
        elif len(parts) >= 2 and parts[1].startswith("softon"):
            self.running = True
        elif len(parts) == 4 and parts[1:3] == ["worklevel", "set"]:
            if self.refuse_power_target:
                return {"STATUS": self._status("Access denied to 'ascset' command", 45, "E")}
            self.limit_w = min(self.max_w, parse_power(parts[3]))
        else:
            return {"STATUS": self._status(f"Invalid ascset {parameter}", 14, "E"), "id": 1}
        return {"STATUS": self._status("ASC 0 set OK", 119), "id": 1}
