"""``gridshift source ...``: one long-running publisher per command (registered in
``streams/cli.py`` with ``cli.add_command(source)``).

Each command reads its settings (``GRIDSHIFT_SOURCE_*``, ``GRIDSHIFT_KAFKA_*``, flags) and the
sources file, and calls :func:`streams.sources.runner.run`; mistakes are one line
(:class:`~streams.errors.GridshiftError`, printed by ``streams.cli.main``) and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streams.errors import GridshiftError
from streams.settings import load_settings
from streams.sources.config import (
    ISO_NAMES,
    SourceSettings,
    load_source_settings,
    load_sources_file,
)

F = TypeVar("F", bound=Callable[..., Any])


def _common(func: F) -> F:
    """The options every source command takes."""
    options = (
        click.option(
            "--config",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Sources file (TOML) [env GRIDSHIFT_SOURCE_CONFIG; "
            "example: streams/examples/sources.toml].",
        ),
        click.option(
            "--state-dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="Checkpoints and load files [env GRIDSHIFT_SOURCE_STATE_DIR; "
            "default ./gridshift-sources].",
        ),
        click.option(
            "--health-port",
            type=click.IntRange(0, 65535),
            help="Port of /health and /metrics, 0 = any [env GRIDSHIFT_SOURCE_HEALTH_PORT; "
            "default 8790].",
        ),
        click.option("--no-health", is_flag=True, help="Serve no /health or /metrics."),
        click.option(
            "--once", is_flag=True, help="Poll once and exit (non-zero if the poll failed)."
        ),
        click.option(
            "--bootstrap",
            metavar="HOST:PORT",
            help="Kafka bootstrap servers [env GRIDSHIFT_KAFKA_BOOTSTRAP].",
        ),
        click.option(
            "--topic-prefix",
            metavar="PREFIX",
            help="Prefix of every topic [env GRIDSHIFT_TOPIC_PREFIX].",
        ),
    )
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def source() -> None:
    """Feeds in: poll public market and grid APIs and publish validated events.

    One command per source, each running until Ctrl-C/SIGTERM: it polls, drops what it already
    sent (a checkpoint per source in --state-dir), retries API and broker errors with capped
    exponential backoff, and serves /health and /metrics. See docs/SOURCES.md.
    """


@source.command("iso")
@click.argument("iso_name", metavar="ISO", type=click.Choice(ISO_NAMES, case_sensitive=False))
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="NODE",
    help="Price node to publish (repeatable; replaces the file's nodes).",
)
@_common
def iso_command(iso_name: str, nodes: tuple[str, ...], **common: Any) -> None:
    """Real-time and day-ahead prices of ISO (ERCOT, CAISO, PJM, NYISO) by node to
    grid.price.v1, and its load and load forecast to a JSONL file (gridstatus)."""
    from streams.sources.runner import iso_plan  # noqa: PLC0415 - keep --help fast

    settings, sources = _configuration(common)
    _serve(iso_plan(iso_name.upper(), sources, settings, nodes), settings, common)


@source.command("carbon")
@_common
def carbon_command(**common: Any) -> None:
    """Carbon intensity (average, marginal; actual and forecast) of each configured region
    to grid.carbon.v1 (Electricity Maps, WattTime)."""
    from streams.sources.runner import carbon_plan  # noqa: PLC0415

    settings, sources = _configuration(common)
    _serve(carbon_plan(sources, settings), settings, common)


@source.command("hashprice")
@_common
def hashprice_command(**common: Any) -> None:
    """Hashprice ($/TH/day) from difficulty, block subsidy, fees and the BTC price to
    market.hashprice.v1 (mempool.space API)."""
    from streams.sources.runner import hashprice_plan  # noqa: PLC0415

    settings, sources = _configuration(common)
    _serve(hashprice_plan(sources), settings, common)


@source.command("reserve")
@_common
def reserve_command(**common: Any) -> None:
    """ERCOT day-ahead ancillary-service clearing prices (MCPC: reg_up, reg_down, rrs, ecrs,
    non_spin) of today and, once the DAM has run (~13:30 Central), tomorrow to grid.reserve.v1
    (gridstatus)."""
    from streams.sources.runner import reserve_plan  # noqa: PLC0415

    settings, sources = _configuration(common)
    _serve(reserve_plan(sources, settings), settings, common)


@source.command("coincident-peak")
@_common
def coincident_peak_command(**common: Any) -> None:
    """ERCOT 4CP probabilities for each summer hour of tomorrow (issued at 06:00 Central, before
    the day-ahead market closes) and today, computed with the backtest's
    model from ERCOT's load and load forecast, as coincident_peak signals to grid.signal.v1
    (gridstatus). Publishes nothing outside June-September."""
    from streams.sources.runner import coincident_peak_plan  # noqa: PLC0415

    settings, sources = _configuration(common)
    _serve(coincident_peak_plan(sources, settings), settings, common)


@source.command("check")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Sources file (TOML) [env GRIDSHIFT_SOURCE_CONFIG].",
)
def check_command(config: Path | None) -> None:
    """Validate the settings and the sources file and print them (secrets hidden)."""
    settings = load_source_settings(config=config)
    sources = load_sources_file(settings.config)
    click.echo(
        json.dumps(
            {
                "settings": json.loads(settings.model_dump_json()),
                "sources": json.loads(sources.model_dump_json()),
            },
            indent=2,
        )
    )


def _configuration(common: dict[str, Any]) -> tuple[SourceSettings, Any]:
    settings = load_source_settings(
        config=common["config"],
        state_dir=common["state_dir"],
        health_port=common["health_port"],
        health_enabled=False if common["no_health"] else None,
    )
    return settings, load_sources_file(settings.config)


def _serve(plan: Any, settings: SourceSettings, common: dict[str, Any]) -> None:
    from streams.sources.runner import kafka_out, run  # noqa: PLC0415

    try:
        kafka = load_settings(
            kafka_bootstrap=common["bootstrap"], topic_prefix=common["topic_prefix"]
        )
        out = kafka_out(kafka, plan.poll)
    except BaseException:
        if plan.executor is not None:
            plan.executor.shutdown(wait=False)
        raise
    ok = asyncio.run(run(plan, settings, out, once=common["once"]))
    if common["once"] and not ok:
        raise GridshiftError(f"the {plan.name} poll failed (see the log above)")
