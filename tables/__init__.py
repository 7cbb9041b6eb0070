"""Per-camera state held in Faust tables (RocksDB + changelog): the tables (``*_table.py``,
``count_tables.py``), the camera actors' logic (tracker, analytics: lines, zones, speed, incidents)
and how their state is written and restored (``checkpoints``, ``actor_cache``, ``local_copies``)."""
