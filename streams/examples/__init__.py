"""Example files shipped with the package: the two-site fleet and the ERCOT replay mapping."""
