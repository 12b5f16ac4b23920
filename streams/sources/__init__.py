"""Feeds in: long-running publishers that poll public market and grid APIs and publish
validated input events (``gridshift source iso|carbon|hashprice``).

Each source polls one provider on its own schedule, maps the answer to contract events
(:mod:`schemas`), drops what it already sent (a checkpoint file per source, de-duplicated by
interval), publishes the rest through :class:`streams.sdk.Publisher`, and only then advances its
checkpoint. API and network errors are retried with capped exponential backoff; malformed
answers are logged and counted, never published. Health and Prometheus counters are served over
HTTP.

Modules: ``config`` (settings and the strict TOML file), ``checkpoint`` (what was sent),
``loop`` (the poll, backoff and publish cycle), ``health`` (metrics and ``/health``), ``iso``
(prices and load through gridstatus), ``carbon`` (WattTime, Electricity Maps), ``hashprice``
(on-chain facts and a BTC price), ``sink`` (the load JSONL file) and ``cli`` (the click group).

This package must not import the worker (``streams.worker``): sources and workers are separate
processes that meet only on Kafka topics. The provider libraries are an optional extra and are
imported only by the command that needs them.
"""
