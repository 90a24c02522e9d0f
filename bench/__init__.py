"""Benchmarks for clawstate: ``python -m bench.run`` (``make bench``).

Every figure is a ratio against the best peer measured in the same run on the
same machine; the generated report goes to ``docs/benchmarks.md``.  Benchmarks
never live in the timed unit tests (``tests/test_bench_smoke.py`` only checks
that ``--quick`` produces the tables).

Layout: :mod:`bench.harness` holds timing, RSS, environment and table helpers;
one module per area (:mod:`bench.kv_sqlite`, later PostgreSQL, Redis, events,
caches, the server) exposes ``CASES``; :mod:`bench.run` drives them.
"""
