"""Utility demand response in: an OpenADR 2.0b VEN (openleadr) for one site.

``gridshift openadr-ven --site SITE --config ven.toml`` registers with the utility's VTN, turns
each event it receives into grid.signal.v1 GridSignalEvents (limits or reductions per interval,
the event's ids carried in ``signal_id``), opts in or out by a configurable policy against the
site's latest dispatch decision, and reports the site's measured load back to the VTN.

Owns: the VEN configuration (``config``), the pure mapping of events to signals and the opt
policy (``signals``), the VEN service (``ven``) and its CLI command (``cli``). Must not import
``streams.worker`` or the optimizer: it talks to the service through Kafka only.
"""
