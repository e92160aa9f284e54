"""The ``static`` resolver: a fixed list of backends from the config file.

    resolver:
      static:
        hostnames: [backend-1:4317, backend-2:4317]

The set is published once at start and never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..telemetry import Telemetry
from .base import Resolver


class StaticResolver(Resolver):
    kind = "static"

    def __init__(self, telemetry: Telemetry, hostnames: Sequence[str]) -> None:
        super().__init__(telemetry)
        self._hostnames = tuple(hostnames)

    async def _first_resolution(self) -> None:
        self._record_success()
        self._publish(self._hostnames)

    async def _run(self) -> None:
        return None
