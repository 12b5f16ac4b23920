"""The decision path without Kafka, shared by the live worker and the backtest: the fleet
file, time curves, the input state, ingest of one raw message, snapshots, decisions and their
fallbacks, and the :class:`~streams.engine.decider.Decider` that runs one round.

Imports nothing of ``streams.worker``, ``streams.kafka`` or a Kafka client.
"""
