"""``gridshift agent --site SITE``: run the site agent until Ctrl-C or SIGTERM.

Parses the options into the shared settings (Kafka) and the agent file, builds the drivers and
calls :meth:`SiteAgent.run`; every mistake is one line (a :class:`GridshiftError`). Registered
in ``streams/cli.py`` with ``cli.add_command(agent)``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from streams.agent.config import AgentConfig, load_agent_config
from streams.agent.controller import SiteAgent
from streams.agent.gpus import NvmlGpus, ReplicaHook, nvml_unavailable
from streams.agent.miners import drivers_for
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.settings import load_settings


@click.command()
@click.option("--site", "site_id", required=True, metavar="SITE_ID", help="The site to drive.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Agent file (TOML): miners, GPU drivers, ramp, watchdog (docs/AGENT.md).",
)
@click.option(
    "--bootstrap",
    metavar="HOST:PORT",
    help="Kafka bootstrap servers [env GRIDSHIFT_KAFKA_BOOTSTRAP].",
)
@click.option(
    "--topic-prefix", metavar="PREFIX", help="Prefix of every topic [env GRIDSHIFT_TOPIC_PREFIX]."
)
def agent(
    site_id: str, config_path: Path | None, bootstrap: str | None, topic_prefix: str | None
) -> None:
    """Follow SITE's dispatch decisions and drive its miners and GPUs; report telemetry."""
    settings = load_settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    if not settings.kafka_bootstrap:
        raise GridshiftError(
            "no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP"
        )
    config = load_agent_config(config_path).for_site(site_id)
    asyncio.run(run_agent(config, KafkaConnection.from_settings(settings), settings.topic_prefix))


def build_agent(
    config: AgentConfig, connection: KafkaConnection | str, topic_prefix: str
) -> SiteAgent:
    """The agent with the drivers its file asks for (clear errors for missing libraries)."""
    nvml = None
    if config.gpu.nvml is not None:
        missing = nvml_unavailable()
        if missing is not None:
            raise GridshiftError(f"[gpu.nvml] is configured but {missing}")
        nvml = NvmlGpus(config.gpu.nvml)
    return SiteAgent(
        config,
        connection,
        miners=drivers_for(
            config.miners,
            timeout_s=config.miner_io.timeout_s,
            discovery_timeout_s=config.miner_io.discovery_timeout_s,
        ),
        nvml=nvml,
        hook=ReplicaHook(config.gpu.hook) if config.gpu.hook is not None else None,
        topic_prefix=topic_prefix,
    )


async def run_agent(
    config: AgentConfig, connection: KafkaConnection | str, topic_prefix: str
) -> None:
    """Run the agent until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await build_agent(config, connection, topic_prefix).run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
