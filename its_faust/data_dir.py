"""One worker per data folder: its RocksDB table copies cannot be shared.

A second worker started on the same folder (the same working directory, by default)
used to spin on RocksDB's lock ("DB for partition 0 is locked! Retry in 1s") and then
crash with a traceback once it was given a partition. The worker now claims the folder
first, with an advisory lock the system drops when the process ends however it ends,
and a second one stops with one line that says what to do.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "worker.lock"

log = logging.getLogger(__name__)

_claimed: dict[Path, IO | None] = {}  # held open for the life of the process: closing it would release the lock


class DataDirInUse(RuntimeError):
    """Another worker holds this data folder (or it cannot be one: not a folder, not writable)."""


def claim(data_dir: Path) -> None:
    """Take ``data_dir`` for this process, or raise :class:`DataDirInUse`. A second claim by the same process is a no-op."""
    data_dir = Path(data_dir).resolve()
    if data_dir in _claimed:
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_NAME, "a+")
    except OSError as exc:  # a file of that name, a read-only mount, a folder of another user's
        raise DataDirInUse(
            f"data folder {data_dir} cannot hold this worker's tables ({exc.strerror or exc}); "
            "ITS_FAUST_DATA_DIR=<a folder this user can write> its-faust worker"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise DataDirInUse(
            f"data folder {data_dir} is in use by another worker{f' (pid {holder})' if holder else ''}; "
            "give each worker on one machine its own: ITS_FAUST_DATA_DIR=<another folder> its-faust worker"
        ) from None
    except OSError as exc:  # a file system without flock (some network mounts): RocksDB's own lock still guards the tables
        handle.close()
        log.warning("cannot lock data folder %s (%s): a second worker on it is not refused", data_dir, exc.strerror or exc)
        _claimed[data_dir] = None
        return
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _claimed[data_dir] = handle


def lost() -> str | None:
    """Why a data folder this process claimed is no longer the one it claimed, or None while each still is.

    Deleted (or replaced) under a running worker, its lock went with it: a second worker could then claim the
    path, and the two wrote the same tables' files (the first by paths into the new folder), which RocksDB
    then refused as corrupt at every start (a trial).
    """
    for data_dir, handle in _claimed.items():
        if handle is None:
            continue  # not locked (a file system without flock): nothing to compare
        try:
            on_disk = os.stat(data_dir / LOCK_NAME)
        except (FileNotFoundError, NotADirectoryError):  # (the folder replaced by a file: NotADirectoryError)
            return f"data folder {data_dir} was deleted under this worker (its {LOCK_NAME} is gone)"
        except OSError:
            continue  # unreadable for now (a network mount away): not a sign it was replaced
        held = os.fstat(handle.fileno())
        if (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            return f"data folder {data_dir} was replaced under this worker (its {LOCK_NAME} is another file)"
    return None
