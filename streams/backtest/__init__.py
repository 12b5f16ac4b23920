"""Offline studies on history: reading history files, turning them into input events, scenario
files, the strategies and their run, and the report.

Imports nothing of ``streams.worker`` or a Kafka client: a backtest runs the engine directly.
"""
