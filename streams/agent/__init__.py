"""The site agent: set-points out. ``gridshift agent --site SITE`` follows one site's dispatch
decisions and drives its equipment: miners through the asic-rs library (pyasic-rs), GPUs through
NVML power caps and a replica-scaling hook, and publishes what it measured as site telemetry.

Owns: the agent's TOML configuration (``config``), the pure fleet allocation and ramp planning
(``allocation``), the miner and GPU drivers (``miners``, ``gpus``), the control loop with its
watchdog (``controller``) and the CLI command (``cli``). ``configfile`` is the strict TOML model
base that ``streams.openadr`` reuses.

Must not import ``streams.worker`` or the optimizer: it talks to the service only through Kafka
(``streams.sdk``), like any other site controller.
"""
