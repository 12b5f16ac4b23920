"""The I/O shell of gridshift: the faust app, embedded broker, SDK, CLI and demo.

Imports point one way: ``streams`` uses ``optimizer`` and ``schemas``, never the reverse.
"""
