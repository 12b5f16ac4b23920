"""Tests of the OpenADR VEN (streams/openadr): event-to-signal mapping, the opt policy, the
configuration, and the VEN against a real openleadr VTN and the embedded broker."""
