"""``gridshift``: the command line. Each command parses its options into :class:`Settings` and
calls one function; mistakes are reported as one line (what is wrong, how to fix it), never as a
traceback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from schemas import INPUT_TOPICS, DispatchDecision, json_schemas
from streams.agent.cli import agent
from streams.backtest.sweep_cli import sweep
from streams.errors import GridshiftError
from streams.kafka.connection import KafkaConnection
from streams.openadr.cli import openadr_ven
from streams.settings import Settings, load_settings
from streams.sources.cli import source
from streams.windows import WINDOW_FORMATS, utc_bound

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def bootstrap_option(func: F) -> F:
    return click.option(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env GRIDSHIFT_KAFKA_BOOTSTRAP].",
    )(func)


def prefix_option(func: F) -> F:
    return click.option(
        "--topic-prefix",
        metavar="PREFIX",
        help="Prefix of every topic [env GRIDSHIFT_TOPIC_PREFIX].",
    )(func)


def sites_option(func: F) -> F:
    return click.option(
        "--sites",
        "sites_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Fleet file (TOML) [env GRIDSHIFT_SITES_FILE; default: the example fleet].",
    )(func)


def _settings(ctx: click.Context, **overrides: object) -> Settings:
    return load_settings(log_level=ctx.obj.get("log_level"), **overrides)


def _require_backtest_extra(command: str) -> None:
    """History commands need the ``backtest`` extra (pandas, pyarrow, matplotlib): one line
    saying how to install it instead of an ImportError traceback."""
    needed = ("pandas", "pyarrow", "matplotlib")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise GridshiftError(
            f"'gridshift {command}' needs the backtest extra ({', '.join(missing)} missing): "
            "pip install 'gridshift[backtest]'"
        )


def _connection(settings: Settings) -> KafkaConnection:
    """The Kafka connection of a client command, resolved once from its settings."""
    if not settings.kafka_bootstrap:
        raise GridshiftError(
            "no broker: pass --bootstrap HOST:PORT or set GRIDSHIFT_KAFKA_BOOTSTRAP "
            "(start one with 'gridshift broker')"
        )
    return KafkaConnection.from_settings(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Log verbosity [env GRIDSHIFT_LOG_LEVEL; default INFO].",
)
@click.version_option(package_name="gridshift")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """gridshift: shift each site's power between Bitcoin mining and GPU inference.

    Grid prices, carbon, signals and telemetry arrive on Kafka; dispatch decisions go out on
    dispatch.decision.v1. Without --bootstrap, `worker` and `demo` start an embedded broker.
    """
    from streams.logs import configure  # noqa: PLC0415 - keep `--help` fast

    ctx.obj = {"log_level": log_level}
    settings = load_settings()
    configure(log_level or settings.log_level, settings.log_format)


@cli.command()
@bootstrap_option
@prefix_option
@sites_option
@click.pass_context
def worker(
    ctx: click.Context, bootstrap: str | None, topic_prefix: str | None, sites_file: Path | None
) -> None:
    """Run the dispatch service until Ctrl-C (or SIGTERM)."""
    from streams.engine.fleet import load_fleet  # noqa: PLC0415
    from streams.worker.service import serve  # noqa: PLC0415

    settings = _settings(
        ctx, kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, sites_file=sites_file
    )
    _run(serve(settings, load_fleet(settings.sites_file)))


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), help="TCP port (default: a free one).")
def broker(port: int | None) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, in memory) in the foreground."""
    from streams.kafka.broker import BrokerError, EmbeddedBroker  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port=port) as embedded:
        click.echo(f"embedded broker listening on {embedded.bootstrap} (in memory; Ctrl-C stops)")
        click.echo(f"  export GRIDSHIFT_KAFKA_BOOTSTRAP={embedded.bootstrap}")
        # Short waits: a signal is acted on within 0.1 s, and the broker's stop (SIGINT, then
        # SIGKILL) frees the port at once, clients connected or not.
        while not stop.wait(timeout=0.1):
            if not embedded.running:
                raise BrokerError(f"the broker exited by itself: {embedded.log_tail()}")
    click.echo("broker stopped")


@cli.command()
@click.argument("topic", type=click.Choice(INPUT_TOPICS))
@click.argument("source", type=click.File("r"), default="-")
@bootstrap_option
@prefix_option
@click.pass_context
def publish(
    ctx: click.Context, topic: str, source: TextIO, bootstrap: str | None, topic_prefix: str | None
) -> None:
    """Validate JSON lines from SOURCE (a file, or - for stdin) and publish them to TOPIC.

    Every line is validated first; if any is invalid nothing is sent.
    """
    from streams.engine.codec import loads_unique  # noqa: PLC0415
    from streams.sdk import Publisher, validate_event  # noqa: PLC0415

    settings = _settings(ctx, kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    connection = _connection(settings)
    events, errors = [], []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            events.append(validate_event(topic, loads_unique(line)))
        except (ValueError, GridshiftError) as exc:  # not JSON, a key twice, or invalid
            errors.append(f"line {number}: {exc}")
    for error in errors[:10]:
        click.echo(f"gridshift: {error}", err=True)
    if errors:
        raise GridshiftError(f"{len(errors)} invalid line(s) in {source.name}; nothing was sent")

    async def send() -> int:
        async with Publisher(connection, topic_prefix=settings.topic_prefix) as publisher:
            return await publisher.publish_many(topic, events)

    click.echo(f"published {_run(send())} event(s) to {settings.topic(topic)}")


@cli.command()
@click.option("--site", "sites", multiple=True, metavar="SITE_ID", help="Only these sites.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest decision, not now.")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True
)
@click.option("--limit", type=click.IntRange(min=1), help="Exit after this many decisions.")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Exit after this many seconds.")
@bootstrap_option
@prefix_option
@click.pass_context
def subscribe(
    ctx: click.Context,
    sites: tuple[str, ...],
    from_beginning: bool,
    fmt: str,
    limit: int | None,
    timeout: float | None,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Print dispatch decisions as they arrive (duplicates dropped by decision id)."""
    from streams.sdk import DecisionSubscriber  # noqa: PLC0415

    settings = _settings(ctx, kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    connection = _connection(settings)
    render = _render_json if fmt == "json" else _render_row
    if fmt == "table":
        click.echo(_TABLE_HEADER)

    async def follow() -> None:
        count = 0
        async with DecisionSubscriber(
            connection,
            topic_prefix=settings.topic_prefix,
            sites=sites,
            from_beginning=from_beginning,
        ) as subscriber:
            async for decision in subscriber:
                click.echo(render(decision))
                count += 1
                if limit is not None and count >= limit:
                    return

    with contextlib.suppress(TimeoutError):
        _run(asyncio.wait_for(follow(), timeout=timeout))


_TABLE_HEADER = (
    f"{'interval_start (UTC)':<20} {'site':<16} {'mining MW':>9} {'GPU MW':>8} "
    f"{'import MW':>9} {'b/e $/MWh':>9} {'trigger':<14} binding"
)


def _render_json(decision: DispatchDecision) -> str:
    return decision.model_dump_json()


def _render_row(decision: DispatchDecision) -> str:
    start = decision.interval_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return (
        f"{start:<20} {decision.site_id:<16} {decision.mining_mw:>9.2f} {decision.gpu_mw:>8.2f} "
        f"{decision.grid_import_mw:>9.2f} {decision.mining_breakeven_usd_per_mwh:>9.1f} "
        f"{decision.trigger:<14} {','.join(decision.binding_constraints)}"
    )


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Real data folder [env GRIDSHIFT_DATA_DIR]; absent = a SYNTHETIC week.",
)
@click.option(
    "--week-start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2024-08-18",
    show_default=True,
    help="First day (US Central) of the replayed week.",
)
@click.option(
    "--days", type=click.IntRange(1, 31), default=7, show_default=True, help="Days to replay."
)
@bootstrap_option
@sites_option
@click.pass_context
def demo(
    ctx: click.Context,
    data_dir: Path | None,
    week_start: datetime,
    days: int,
    bootstrap: str | None,
    sites_file: Path | None,
) -> None:
    """Replay one real ERCOT week through broker and worker; print decisions and a summary."""
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    _require_backtest_extra("demo")
    from streams.demo import run_demo  # noqa: PLC0415
    from streams.engine.fleet import load_fleet  # noqa: PLC0415

    settings = _settings(ctx, kafka_bootstrap=bootstrap, data_dir=data_dir, sites_file=sites_file)
    if settings.data_dir is None:
        click.echo(
            "no data folder given (--data-dir or GRIDSHIFT_DATA_DIR): running on a SYNTHETIC week",
            err=True,
        )
    start = week_start.replace(tzinfo=ZoneInfo("America/Chicago")).astimezone(UTC)
    _run(
        run_demo(
            settings,
            load_fleet(settings.sites_file),
            settings.data_dir,
            start,
            days=days,
            echo=click.echo,
        )
    )


@cli.command()
@click.argument("scenario")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data folder for the scenario's data: paths [env GRIDSHIFT_DATA_DIR]; not needed "
    "when every path is relative to the scenario file or absolute.",
)
@click.option(
    "--start",
    type=click.DateTime(WINDOW_FORMATS),
    help="First interval (UTC); default: the scenario's.",
)
@click.option(
    "--end",
    type=click.DateTime(WINDOW_FORMATS),
    help="End (UTC, exclusive); default: the scenario's.",
)
@click.option(
    "--price-lag",
    type=click.IntRange(0, 96),
    help="Intervals after its start that a price becomes known (default: scenario).",
)
@click.option(
    "--clip-to-data",
    is_flag=True,
    help="Run only the part of the period the data covers (default: refuse a period the data "
    "does not cover); the report says so at the top.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Report folder [default: reports/<scenario>].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes running gridshift in chunks side by side, each chunk warmed up by the "
    "horizon plus a day so the result does not depend on the split; default: one per core.",
)
@click.option(
    "--peak-foresight",
    is_flag=True,
    help="Also run gridshift with every realised 4CP interval known at the forecaster's issue "
    "time (the ceiling of any 4CP forecast): splits the gap to the oracle into what the "
    "forecast costs and what knowing prices is worth. Needs [coincident_peak].",
)
@click.option(
    "--missed-peak",
    "missed_peaks",
    multiple=True,
    type=click.DateTime(WINDOW_FORMATS),
    help="A realised 4CP interval start (UTC) the --peak-foresight run is not told of, as a "
    "forecaster that missed it (repeatable): what the other peaks are worth without it.",
)
@click.pass_context
def backtest(
    ctx: click.Context,
    scenario: str,
    data_dir: Path | None,
    start: datetime | None,
    end: datetime | None,
    price_lag: int | None,
    clip_to_data: bool,
    out: Path | None,
    workers: int | None,
    peak_foresight: bool,
    missed_peaks: tuple[datetime, ...],
) -> None:
    """Backtest SCENARIO (a file, or a shipped name) against baselines and an oracle.

    Relative paths in a scenario file resolve against the file's folder; data:PATH resolves
    against --data-dir (see docs/SCENARIOS.md).
    """
    _require_backtest_extra("backtest")
    from streams.backtest.report import markdown_table, run_backtest, summary_rows, write_report  # noqa: PLC0415
    from streams.backtest.scenario import load_scenario, resolve_scenario  # noqa: PLC0415

    settings = _settings(ctx, data_dir=data_dir)
    path = resolve_scenario(scenario)
    loaded = load_scenario(path)
    if price_lag is not None:
        loaded = loaded.model_copy(update={"price_lag_intervals": price_lag})
    result = run_backtest(
        loaded,
        settings.data_dir,
        path.parent,
        start=utc_bound(start),
        end=utc_bound(end),
        clip_to_data=clip_to_data,
        workers=workers or os.cpu_count() or 1,
        peak_foresight=peak_foresight,
        missed_peaks=[utc_bound(m) for m in missed_peaks],
    )
    if result.ledger.clipped:
        click.echo(f"gridshift: {result.ledger.clipped}", err=True)
    click.echo(f"{result.heading()}\n")
    click.echo(markdown_table(summary_rows(result)))
    report = write_report(result, out or Path("reports") / loaded.name)
    click.echo(f"\nreport: {report}")


@cli.command()
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option(
    "--scenario",
    help="Replay a scenario's markets (name or file) instead of SOURCE, with its 4CP signals, "
    "reserve prices and grid emergencies, each when it became known; needs --start and --end.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data folder for the scenario's data: paths [env GRIDSHIFT_DATA_DIR].",
)
@click.option(
    "--mapping",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Mapping file for non-canonical tables (see streams/examples/).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    help="N x real time by event time; default: as fast as possible.",
)
@click.option(
    "--start",
    type=click.DateTime(WINDOW_FORMATS),
    help="First interval to send (UTC); resume position after Ctrl-C.",
)
@click.option(
    "--end",
    type=click.DateTime(WINDOW_FORMATS),
    help="Stop before this time (UTC).",
)
@bootstrap_option
@prefix_option
@click.pass_context
def replay(
    ctx: click.Context,
    source: Path | None,
    scenario: str | None,
    data_dir: Path | None,
    mapping: Path | None,
    speed: float | None,
    start: datetime | None,
    end: datetime | None,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Publish a grid history (CSV/Parquet, gridstatus export, or mapped) into the input topics,
    or a scenario's window (--scenario) with its 4CP signals, reserve prices and emergencies."""
    _require_backtest_extra("replay")
    import pandas as pd  # noqa: PLC0415

    from streams.backtest.history import ercot_mapping_path, load_mapping, read_history  # noqa: PLC0415
    from streams.backtest.scenario import load_scenario, resolve_scenario  # noqa: PLC0415
    from streams.replay import replay_history, scenario_replay  # noqa: PLC0415
    from streams.sdk import Publisher  # noqa: PLC0415

    # The arguments first, each mistake one line, before asking for a broker.
    if (source is None) == (scenario is None):
        raise click.UsageError("give a SOURCE file or --scenario NAME (one of them)")
    if scenario is not None and (start is None or end is None):
        raise click.UsageError("--scenario needs --start and --end (UTC)")
    for given, what in (
        (source, "SOURCE (a grid history table, CSV or Parquet)"),
        (mapping, "--mapping (a mapping file, see streams/examples/)"),
    ):
        if given is not None and not given.is_file():
            raise GridshiftError(f"no file {given}: {what}")
    if scenario is not None:
        load_scenario(resolve_scenario(scenario))  # an unknown name or a mistake in the file
    settings = _settings(
        ctx, kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, data_dir=data_dir
    )
    connection = _connection(settings)
    extra: list[tuple[datetime, Any]] = []
    if scenario is not None:
        assert start is not None  # checked above, with end
        assert end is not None
        window = scenario_replay(scenario, settings.data_dir, utc_bound(start), utc_bound(end))
        history, extra = window.history, window.extra
    else:
        assert source is not None
        if mapping is None and source.name.startswith("ercot_replay_15min"):
            mapping = ercot_mapping_path()  # the shared ERCOT table is known
        history = read_history(source, load_mapping(mapping) if mapping else None)
        history = history.window(
            pd.Timestamp(utc_bound(start)) if start else None,
            pd.Timestamp(utc_bound(end)) if end else None,
        )
    for note in history.notes:
        click.echo(f"note: {note}", err=True)

    async def send() -> None:
        async with Publisher(connection, topic_prefix=settings.topic_prefix) as publisher:
            task = asyncio.ensure_future(
                replay_history(history, publisher, speed=speed, extra=extra)
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            outcome = await task
        click.echo(f"published {outcome.events} events for {outcome.intervals} intervals")
        if outcome.interrupted and outcome.next_interval is not None:
            click.echo(f"stopped; resume with --start {outcome.next_interval:%Y-%m-%dT%H:%M:%S}")

    _run(send())


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write <topic>.schema.json files into (created if missing).",
)
def schemas(out: Path) -> None:
    """Write one JSON Schema per topic (the wire contract)."""
    out.mkdir(parents=True, exist_ok=True)
    for topic, schema in json_schemas().items():
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        click.echo(str(path))


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of standard output.",
)
def asyncapi(out: Path | None) -> None:
    """Print the AsyncAPI 3.0 document of every topic (JSON)."""
    from schemas.asyncapi import asyncapi_document  # noqa: PLC0415

    text = json.dumps(asyncapi_document(), indent=2, sort_keys=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(str(out))


# The commands that connect gridshift to the world live with their packages; their optional
# libraries (gridstatus, openleadr, asic-rs, NVML) are imported only when a command runs.
cli.add_command(source)
cli.add_command(agent)
cli.add_command(openadr_ven)
cli.add_command(sweep)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every user-facing failure into one line."""
    try:
        result = cli.main(args=argv, prog_name="gridshift", standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "gridshift"
        click.echo(f"gridshift: error: {exc.format_message()} (see '{command} --help')", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"gridshift: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except GridshiftError as exc:
        click.echo(f"gridshift: error: {exc}", err=True)
        return 1
    except (click.Abort, KeyboardInterrupt):
        click.echo("gridshift: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
