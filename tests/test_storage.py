"""A table write the machine's storage fails (the disk full) waits and is tried again; nothing else is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tables.storage import GivenUp, storage_failed, written

DISK_FULL = Exception("IO error: No space left on device: While appending to file: "
                      "/data/v1/tables/line-counts-minute-2.db/000004.log: No space left on device")


def test_what_counts_as_the_storage_failing():
    assert storage_failed(DISK_FULL)  # as rocksdict raises it
    assert storage_failed(OSError(28, "No space left on device"))
    assert not storage_failed(ConnectionResetError(104, "Connection reset by peer"))  # a network's, not a disk's
    assert not storage_failed(TimeoutError())
    import socket
    assert not storage_failed(socket.gaierror(-2, "Name or service not known"))
    assert storage_failed(OSError(2, "No such file or directory"))  # a table folder removed under the worker
    assert not storage_failed(Exception("Corruption: bad block"))  # RocksDB's other statuses: not waited for
    assert not storage_failed(KeyError("IO error"))
    assert not storage_failed(ValueError("IO error: made up by a record"))


def test_a_write_the_disk_refuses_is_tried_again_until_it_goes_through(caplog):
    """Counts lost for good: a crossing whose count the full disk refused was dead-lettered as an internal error."""
    attempts = []

    def write():
        attempts.append(1)
        if len(attempts) < 3:
            raise DISK_FULL
        return "counted"

    with caplog.at_level(logging.WARNING, logger="tables.storage"):
        assert asyncio.run(written(write, "count", first_retry_s=0.01)) == "counted"
    assert len(attempts) == 3
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said[0][0] == "ERROR" and "count: cannot write its tables (IO error: No space left" in said[0][1]
    assert "losing nothing" in said[0][1] and "ITS_FAUST_DATA_DIR" in said[0][1]
    assert said[-1][0] == "WARNING" and said[-1][1].startswith("count: its tables are written again")
    assert len(said) == 2  # told once, not at every try


def test_any_other_failure_is_raised_at_once_and_a_write_no_longer_wanted_is_given_up():
    def bug():
        raise KeyError("speeds")

    with pytest.raises(KeyError):
        asyncio.run(written(bug, "count", first_retry_s=0.01))

    moved, attempts = [False], []

    def full():
        attempts.append(1)
        moved[0] = len(attempts) >= 2  # the partition went to another worker while it waited
        raise DISK_FULL

    with pytest.raises(GivenUp):
        asyncio.run(written(full, "count", give_up=lambda: moved[0], first_retry_s=0.01))
    assert len(attempts) == 2
