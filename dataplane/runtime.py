"""The native data path's threads.

Receiving, decompressing, splitting, compressing and exporting run in the native
extension (:mod:`dataplane._native`, Rust) on a pool of worker threads of its own,
without the Python interpreter's lock; Python keeps the control side (configuration,
resolvers, rings, metrics, shutdown). The pool's size is fixed once per process,
before the first receiver or backend channel starts::

    data_path:
      worker_threads: 2

Without a setting it is the number of CPUs the process may use: the container's CPU
limit (cgroup v2 ``cpu.max``, rounded up) when there is one, else the CPUs the process
may run on, and at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import _native
from .config_model import DataPathConfig

_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = _CPU_MAX) -> int:
    """The CPUs this process may use: its cgroup's quota (rounded up), else its affinity."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def worker_threads(cfg: DataPathConfig) -> int:
    return cfg.worker_threads or available_cpus()


def configure(cfg: DataPathConfig) -> int:
    """Size the native worker pool (once per process); returns the number of threads."""
    threads = worker_threads(cfg)
    _native.configure_runtime(threads)
    return threads
