"""``gridshift openadr-ven --site SITE --config ven.toml``: run the site's OpenADR VEN until
Ctrl-C or SIGTERM. Registered in ``streams/cli.py`` with ``cli.add_command(openadr_ven)``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.openadr.config import VenConfig, load_ven_config
from streams.openadr.ven import Ven
from streams.settings import load_settings


@click.command("openadr-ven")
@click.option("--site", "site_id", required=True, metavar="SITE_ID", help="The site this VEN is.")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="VEN file (TOML): VTN, keys, signal mapping, opt policy (docs/OPENADR.md).",
)
@click.option(
    "--bootstrap",
    metavar="HOST:PORT",
    help="Kafka bootstrap servers [env GRIDSHIFT_KAFKA_BOOTSTRAP].",
)
@click.option(
    "--topic-prefix", metavar="PREFIX", help="Prefix of every topic [env GRIDSHIFT_TOPIC_PREFIX]."
)
def openadr_ven(
    site_id: str, config_path: Path, bootstrap: str | None, topic_prefix: str | None
) -> None:
    """Register SITE with its utility's OpenADR VTN; publish its events as grid signals."""
    settings = load_settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    if not settings.kafka_bootstrap:
        raise GridshiftError(
            "no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP"
        )
    config = load_ven_config(config_path).for_site(site_id)
    asyncio.run(run_ven(config, KafkaConnection.from_settings(settings), settings.topic_prefix))


async def run_ven(config: VenConfig, connection: KafkaConnection | str, topic_prefix: str) -> None:
    """Run the VEN until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Ven(config, connection, topic_prefix=topic_prefix).run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
