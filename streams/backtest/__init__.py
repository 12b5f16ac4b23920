"""Offline studies on history: reading history files (``history``), turning them into input
events (``events``), scenario and mapping files (``scenario``, their mistakes told by
``mistakes``), what the data covers and what is held or not scored (``coverage``), the
strategies and their run (``run``), the data ledger and the decisions' notes (``ledger``,
``notes``), and the report with its figures (``report``, ``plots``).

Imports nothing of ``streams.worker`` or a Kafka client: a backtest runs the engine directly.
"""
