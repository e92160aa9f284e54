"""The top-level ``data_path`` block (Ringleader): the native data path's threads.

Receivers and exporters run on a pool of native worker threads of their own (see
:mod:`dataplane.runtime`), never on the Python interpreter's thread::

    data_path:
      worker_threads: 2   # default: the CPUs this process may use (cgroup cpu.max), at least 1
"""

from __future__ import annotations

from ..config_model import DataPathConfig
from ._values import Val

MAX_WORKER_THREADS = 256


def parse_data_path(value: Val | None) -> DataPathConfig:
    if value is None:
        return DataPathConfig()
    block = value.mapping()
    threads = block.get("worker_threads")
    block.done()
    if threads is None:
        return DataPathConfig()
    return DataPathConfig(worker_threads=threads.integer(minimum=1, maximum=MAX_WORKER_THREADS))
