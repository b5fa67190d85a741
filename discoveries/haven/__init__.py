"""Everything about the Control Room's VH-Database.db, and nothing else.

This package imports nothing from ``syncq``, ``botrunner`` or the admin, and needs only the
``haven`` database alias and the ``HAVEN_*`` settings (``HAVEN_DB_PATH``, ``USE_HAVEN_DATABASE``,
``HAVEN_BUSY_TIMEOUT_SECONDS``): the Control Room agent runs it on a desktop with no keeper.db.
Its public surface, by module:

- :mod:`~discoveries.haven.models`: the Control Room's tables as unmanaged models (``System``,
  ``Planet``, ``Moon``, ``HavenDiscovery``) and the ledger (``LedgerEntry``);
- :mod:`~discoveries.haven.router`: ``HAVEN_ALIAS`` and ``HavenRouter``, which keep those models
  on ``haven`` and every migration off it;
- :mod:`~discoveries.haven.files`: building Control Room files (``haven_file_create``, the demo)
  and choosing the one a service uses (``haven_for_service``, ``haven_use``);
- :mod:`~discoveries.haven.connection`: ``haven_connection``, ``haven_close``, ``haven_status``
  and ``haven_probe``;
- :mod:`~discoveries.haven.catalog`: every read of systems, planets and moons
  (``catalog_location_resolve``, ``catalog_location_check``, ``catalog_systems``,
  ``catalog_places``, ``catalog_version``);
- :mod:`~discoveries.haven.mapping`: location resolution, the keeper→VH row and its hash, pure
  functions;
- :mod:`~discoveries.haven.ledger`: the ledger that makes every write, update and delete happen
  once;
- :mod:`~discoveries.haven.writer`: ``haven_discovery_write``, ``haven_discovery_delete``,
  ``haven_unplaced_problem`` and ``haven_row_preview``;
- :mod:`~discoveries.haven.verify`: comparing the ledger and our rows with what keeper.db
  believes synced (restores, the Control Room's changes, orphans);
- :mod:`~discoveries.haven.errors`: ``HavenError`` and its kinds.

The modules are imported by name, not through this package, because the models may be imported
only once Django's apps are ready.
"""
