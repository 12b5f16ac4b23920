"""``gridshift sweep``: one click command calling :func:`streams.backtest.sweep.run_sweep` and
:func:`streams.backtest.sweep_report.write_sweep` (registered by ``streams.cli``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from streams.windows import WINDOW_FORMATS, utc_bound


@click.command()
@click.argument("scenario", required=False)
@click.option(
    "--vary",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A design choice to vary: a dotted scenario key (sites.0.gpu_capacity_mw, horizon.hours) "
    "or convert_share, gpu_demand_share, window; repeat for a grid.",
)
@click.option(
    "--uncertain",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A key describing the world (percentiles and the worst case are taken over these); "
    "gpu_demand_share and window always are.",
)
@click.option(
    "--sweep-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A sweep file ([vary], [uncertain], scenario, window_days); see docs/SWEEPS.md.",
)
@click.option(
    "--window-days",
    type=click.FloatRange(min=0.01),
    help="Length of each price window (the window key) [default: the file's, else 7].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes (1: in this process).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on an existing Dask cluster (tcp://host:port) instead of locally.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GRIDSHIFT_DATA_DIR",
    help="Data folder for the scenario's data: paths [env GRIDSHIFT_DATA_DIR].",
)
@click.option("--start", type=click.DateTime(WINDOW_FORMATS), help="First interval (UTC).")
@click.option("--end", type=click.DateTime(WINDOW_FORMATS), help="End (UTC, exclusive).")
@click.option("--clip-to-data", is_flag=True, help="Run only the part the data covers.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder; finished variants in it are not re-run "
    "[default: reports/sweep-<scenario>].",
)
def sweep(
    *,
    scenario: str | None,
    vary: tuple[str, ...],
    uncertain: tuple[str, ...],
    sweep_file: Path | None,
    window_days: float | None,
    workers: int,
    scheduler: str | None,
    data_dir: Path | None,
    start: datetime | None,
    end: datetime | None,
    clip_to_data: bool,
    out: Path | None,
) -> None:
    """Backtest every variant of SCENARIO (the grid of the --vary values) and report them.

    Resumable: run it again with the same --out after Ctrl-C or a crash.
    """
    from streams.backtest.sweep import run_sweep  # noqa: PLC0415
    from streams.backtest.sweep_report import write_sweep  # noqa: PLC0415
    from streams.backtest.sweep_spec import build_spec  # noqa: PLC0415

    spec = build_spec(scenario, vary, uncertain, sweep_file, window_days)
    folder = out or Path("reports") / f"sweep-{spec.scenario_path.stem}"
    run = run_sweep(
        spec,
        folder,
        data_dir,
        workers=workers,
        scheduler=scheduler,
        start=utc_bound(start),
        end=utc_bound(end),
        clip_to_data=clip_to_data,
    )
    report = write_sweep(run, spec, folder)
    click.echo(
        f"{len(run.results)} variants ({run.ran} run, {run.skipped} already done) in "
        f"{run.seconds:.1f} s\nreport: {report}"
    )
