"""Dispatch decisions built from the schemas for the agent and VEN tests, dated around the wall
clock (the agent judges lateness by wall clock), and published as the worker publishes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from schemas import DECISION_TOPIC, DispatchDecision, Economics, PlanStep, SolverReport
from streams.engine.codec import encode


def decision(
    site_id: str,
    *,
    mining_mw: float,
    gpu_mw: float = 0.0,
    grid_import_mw: float | None = None,
    start: datetime | None = None,
    minutes: float = 5.0,
) -> DispatchDecision:
    """A decision for ``site_id`` over [start, start + minutes) (default: starting a minute ago)."""
    begin = start or datetime.now(UTC) - timedelta(minutes=1)
    end = begin + timedelta(minutes=minutes)
    imported = mining_mw + gpu_mw if grid_import_mw is None else grid_import_mw
    return DispatchDecision(
        interval_start=begin,
        interval_end=end,
        decision_id=uuid.uuid4().hex,
        site_id=site_id,
        trigger="price",
        input_version=uuid.uuid4().hex[:16],
        mining_mw=mining_mw,
        gpu_mw=gpu_mw,
        grid_import_mw=imported,
        mining_breakeven_usd_per_mwh=80.0,
        shadow_price_interconnect_usd_per_mwh=0.0,
        gpu_shortfall_mw=0.0,
        signal_excess_mw=0.0,
        binding_constraints=(),
        economics=Economics(
            energy_cost_usd=0.0,
            mining_revenue_usd=0.0,
            gpu_revenue_usd=0.0,
            net_margin_usd=0.0,
            emissions_kg_co2=0.0,
        ),
        solver=SolverReport(status="optimal", solver="HIGHS", solve_time_ms=1.0, wall_time_ms=1.0),
        horizon=(
            PlanStep(
                interval_start=begin,
                interval_end=end,
                mining_mw=mining_mw,
                gpu_mw=gpu_mw,
                grid_import_mw=imported,
                price_usd_per_mwh=30.0,
                carbon_intensity_g_per_kwh=400.0,
            ),
        ),
    )


async def publish_decisions(bootstrap: str, prefix: str, *decisions: DispatchDecision) -> None:
    """Publish like the worker does: JSON value, keyed by site, on dispatch.decision.v1."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for item in decisions:
            await producer.send_and_wait(
                prefix + DECISION_TOPIC, encode(item), key=item.site_id.encode()
            )
    finally:
        await producer.stop()
