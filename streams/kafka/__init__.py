"""Kafka client plumbing shared by the worker, SDK and CLI: the embedded broker, connection
security and the broker watch. No decision logic here."""
