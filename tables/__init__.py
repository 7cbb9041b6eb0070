"""Per-camera state held in Faust tables (RocksDB + changelog): one module per table."""
