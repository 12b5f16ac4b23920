"""The faust service: ingest agents, the batched telemetry consumer, the re-planner, at-least-once
acks, site routing and ownership, state recovery, HTTP API, metrics and dashboard."""
