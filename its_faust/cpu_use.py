"""CPU time a run's processes spent per frame: where the machine's cores went.

Measured from the operating system's per-process CPU times (user + system) between
the start and the end of a run, so it counts every thread of each process (inference,
the Faust event loop, the Kafka client threads) and the run's ramp-up and tail with it.
A process that is gone at either end (a worker killed in a fault test) is left out
rather than guessed.

Beside them, the counters of the CPUs this process may run on say what else took those
cores meanwhile: other processes (``cores_busy_elsewhere``; None when a measured process
died during the run, since its CPU would land there) and, on a virtual machine, the
hypervisor (``cores_stolen``: time a vCPU was ready but the host ran something else). A
benchmark run with either well above zero was disturbed, and its figures say less about
the pipeline. Interrupt time the pipeline's own loopback traffic causes may count as
elsewhere on kernels that account it apart (a few hundredths of a core here).
"""

from __future__ import annotations

import os
import time

import psutil


def _cpu_s(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return times.user + times.system


class CpuMeter:
    """Started on a set of named processes; ``per_frame`` gives each one's CPU milliseconds per frame."""

    def __init__(self, pids: dict[str, int]):
        self._processes: dict[str, psutil.Process] = {}
        self._started: dict[str, float] = {}
        for name, pid in pids.items():
            try:
                process = psutil.Process(pid)
            except psutil.NoSuchProcess:  # gone already: no figure for it
                continue
            started = _cpu_s(process)
            if started is not None:
                self._processes[name], self._started[name] = process, started
        self._cpus = _usable_cpus()
        self._machine_started = _cpu_times(self._cpus)
        self._wall_started = time.monotonic()
        self.wall_s = 0.0
        self.spent_s: dict[str, float] = {}
        self.machine_busy_s = 0.0
        self.stolen_s = 0.0

    @classmethod
    def of_stack(cls, stack) -> "CpuMeter":
        """The stack's embedded broker (when it has one), each worker, and this process (camera and readers)."""
        pids = {f"worker-{i + 1}": w.proc.pid for i, w in enumerate(stack.workers) if w.proc}
        if stack.broker and stack.broker.pid:
            pids["broker"] = stack.broker.pid
        pids["camera_and_reader"] = os.getpid()
        return cls(pids)

    def stop(self) -> "CpuMeter":
        self.wall_s = time.monotonic() - self._wall_started
        machine = _cpu_times(self._cpus)
        self.machine_busy_s = _busy_s(machine) - _busy_s(self._machine_started)
        self.stolen_s = _field_s(machine, "steal") - _field_s(self._machine_started, "steal")
        self.spent_s = {}
        for name, process in self._processes.items():
            now = _cpu_s(process)
            if now is not None:
                self.spent_s[name] = now - self._started[name]
        return self

    def per_frame(self, frames: int) -> dict[str, float]:
        """CPU ms per frame of each process, and their ``total`` (after ``stop``)."""
        if not frames or not self.spent_s:
            return {}
        out = {name: round(s * 1000 / frames, 1) for name, s in self.spent_s.items()}
        out["total"] = round(sum(self.spent_s.values()) * 1000 / frames, 1)
        return out

    @property
    def cores_busy(self) -> float:
        """All the processes' CPU time over the wall time: 2.0 is both cores of a 2-core machine, all the time."""
        return self._cores(sum(self.spent_s.values()))

    @property
    def cores_busy_elsewhere(self) -> float | None:
        """CPU time of every other process on these cores over the wall time (None: a measured process died)."""
        if len(self.spent_s) < len(self._processes):
            return None
        return self._cores(max(0.0, self.machine_busy_s - sum(self.spent_s.values())))

    @property
    def cores_stolen(self) -> float:
        """Time the hypervisor kept the machine's vCPUs from running, over the wall time (0 on bare metal)."""
        return self._cores(self.stolen_s)

    def _cores(self, seconds: float) -> float:
        return round(seconds / self.wall_s, 2) if self.wall_s > 0 else 0.0


def _usable_cpus() -> list[int] | None:
    """The CPUs this process may run on (a container's CPU set), or None where that is not known."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None


def _cpu_times(cpus: list[int] | None) -> list:
    per_cpu = psutil.cpu_times(percpu=True)
    return per_cpu if cpus is None else [per_cpu[i] for i in cpus if i < len(per_cpu)]


def _field_s(times: list, name: str) -> float:
    return sum(getattr(t, name, 0.0) for t in times)


def _busy_s(times: list) -> float:
    """Seconds the CPUs ran anything (user, which includes guests, nice, system, interrupts); steal, idle and
    I/O wait are not."""
    return sum(_field_s(times, name) for name in ("user", "nice", "system", "irq", "softirq"))
