"""A process's limit on open files: raised to what the system allows, and said when it is still short.

A worker keeps some 54 files open per table partition it holds (9 tables, each a RocksDB store of a few files) on top
of its own ~30: under the usual 1024 a worker holding the 32 partitions of the production profile stopped at start
with RocksDB's "Too many open files", and under 64 or 128 one of 4 partitions did (a trial of resource limits); an
API holds one per client (each SSE stream). The soft limit is raised to the hard one, as servers commonly do at
start; what the hard limit does not allow is said once, with what to do.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

FILES_PER_PARTITION = 64  # a worker's per table partition it may hold (measured 54), with room for compactions
FILES_BASE = 256  # a process's own: libraries, sockets, the model, logs


def worker_needs(partitions: int) -> int:
    """The open files a worker holding all ``partitions`` may need."""
    return FILES_BASE + FILES_PER_PARTITION * partitions


def raise_limit(needs: int, who: str) -> int:
    """The soft limit raised to the hard one; a warning naming ``who`` when it stays under ``needs``. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("open files: the limit stays %d (%s)", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < needs:
        log.warning("%s may need about %d open files and may have only %d: raise the limit (`ulimit -n %d` in its shell, "
                    "LimitNOFILE= for systemd, ulimits in compose)", who, needs, soft, needs)
    return soft


def hint(problem: BaseException | str | None) -> str:
    """What to do about a crash for want of open files; empty for any other."""
    if problem is None or "Too many open files" not in str(problem):
        return ""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f" (the limit on open files is {soft}: raise it, `ulimit -n`)"
