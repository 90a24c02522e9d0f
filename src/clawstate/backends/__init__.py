"""Storage engines behind the facade, one package each, each with its event-log code.

- :mod:`.base` — the protocols (:class:`~.base.Backend`, :class:`~.base.EventLog`), the
  records that cross the seam, :class:`~.base.BackendOptions`;
- :mod:`._apply` — the write rules every backend shares (``apply_unit``);
- :mod:`._group_commit` — coalescing concurrent writers into one commit;
- :mod:`.memory`, :mod:`.sqlite`, :mod:`.postgres`, :mod:`.redis` — the backends, each
  built by ``Cls.from_url(url, options)`` from :mod:`clawstate._open`'s scheme table.

Nothing here imports :mod:`clawstate.events` or the facade: the layers above depend on
the backends, never the reverse.
"""
