"""Tests of the feed sources (streams/sources): mapping, checkpoint, polling loop and CLI, on the
embedded broker with the provider clients' network methods replaced."""
