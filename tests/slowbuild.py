"""Run a one-off, cached build inside a test without charging it to pytest-timeout's per-test alarm.

A cold machine builds helm, promtool and the image from the network on first use (minutes; cached
afterwards). pytest-timeout (signal method) would count that against the first test that needs the tool,
so :func:`untimed` pauses its SIGALRM timer for the build and re-arms it with what was left, the way
``tests/conftest.py`` does for the Kubernetes binaries.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def untimed(build: Callable[[], T]) -> T:
    on_main_thread = threading.current_thread() is threading.main_thread()
    remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0] if on_main_thread else 0.0
    try:
        return build()
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, remaining)
