"""Tests of the site agent (streams/agent): allocation, configuration, drivers, and the agent
on the embedded broker driving simulated miners."""
