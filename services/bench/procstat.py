"""CPU time and peak resident memory of a process, read from ``/proc`` (Linux).

The harness reports, per phase, how much CPU each process used (so a reader can see that the
load generator and the receiver were not the limit) and, at the end, each service's peak
resident set (``VmHWM``: the kernel's high-water mark, so a short peak between two looks is not
missed).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def self_cpu_seconds() -> float:
    """CPU seconds of this process, every thread included (the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set in MB (``VmHWM``), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class CpuMeter:
    """CPU used by named processes (and this one, as ``load generator``) over one phase.

    ``start()`` then ``stop()``, which answers CPU seconds per wall second x 100 (100 is one
    full core) and keeps the CPU seconds themselves in ``seconds``.
    """

    pids: Mapping[str, int]
    self_name: str = "load generator"
    seconds: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._self = self_cpu_seconds()
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        used = {self.self_name: self_cpu_seconds() - self._self}
        for name, pid in self.pids.items():
            before, after = self._before.get(name), cpu_seconds(pid)
            if before is not None and after is not None:
                used[name] = after - before
        self.seconds = used
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}
