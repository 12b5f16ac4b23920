"""The shipped scenario files (TOML), package data found with ``importlib.resources``: ``gridshift
backtest NAME`` runs one by its file name without the extension."""
