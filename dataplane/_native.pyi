"""Type stubs of the native extension module (built from dataplane/native by setuptools-rust)."""

from collections.abc import Callable
from typing import Any

class MalformedInput(ValueError): ...
class InvalidInput(ValueError): ...

class RingTable:
    def __init__(self, algorithm: str, cells: bytes, itemsize: int) -> None: ...
    @property
    def backends(self) -> int: ...
    def lookup(self, key: bytes) -> int: ...

class WireSplitter:
    def __init__(self, signal: str, key: str, seed: int = 0) -> None: ...
    def split(self, data: bytes, table: RingTable) -> tuple[list[tuple[int, bytes, int]], int, int]: ...

def _panic_probe() -> None: ...
def configure_runtime(threads: int) -> None: ...
def build_ring_cells(algorithm: str, unique: list[str], ordered: list[str]) -> tuple[bytes, int]: ...
def ring_cell_counts(table: RingTable, backends: int) -> list[int]: ...

# The receivers (src/server, src/py_server.rs, src/budget.rs).
class DecompressFailure(ValueError): ...

def decompress(body: bytes, encoding: str, limit: int) -> bytes: ...

class Budget:
    def __init__(self, data_limit: int) -> None: ...
    @property
    def data_limit(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def peak(self) -> int: ...
    def has_room(self, nbytes: int) -> bool: ...
    def try_charge(self, nbytes: int) -> bool: ...
    def charge(self, nbytes: int) -> None: ...
    def release(self, nbytes: int) -> int: ...

class Call:
    @property
    def id(self) -> int: ...
    @property
    def signal(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def is_json(self) -> bool: ...
    @property
    def timeout(self) -> float | None: ...
    def respond(self, grpc_code: int, http_status: int, message: str) -> bool: ...

class Receiver:
    def __init__(
        self,
        kind: str,
        host: str,
        port: int,
        limit: int,
        budget: Budget,
        event_loop: Any,
        on_request: Callable[[Call], None],
        on_cancel: Callable[[int], None],
        on_refused: Callable[[str, str, str, str, bytes | None], None],
    ) -> None: ...
    @property
    def port(self) -> int: ...
    def stop(self, grace: float, on_stopped: Callable[[], None]) -> None: ...

class ExportCall:
    """A call in flight on a :class:`Channel`."""

    def cancel(self) -> None: ...
    @property
    def done(self) -> bool: ...

class Channel:
    """A gRPC channel to one backend (see dataplane/native/src/client)."""

    def __init__(
        self,
        endpoint: str,
        *,
        compression: str = "none",
        level: int = 0,
        insecure: bool = True,
        ca_file: str | None = None,
        ca_pem: str | None = None,
        cert_file: str | None = None,
        cert_pem: str | None = None,
        key_file: str | None = None,
        key_pem: str | None = None,
        include_system_ca_certs_pool: bool = False,
        system_ca_files: list[str] = ...,
        server_name_override: str | None = None,
        insecure_skip_verify: bool = False,
        min_version: str = "",
        max_version: str = "",
        reload_interval: float | None = None,
        headers: list[tuple[str, str]] = ...,
        authority: str = "",
        user_agent: str = "",
        wait_for_ready: bool = False,
        keepalive_time: float | None = None,
        keepalive_timeout: float | None = None,
        keepalive_permit_without_stream: bool = False,
        write_buffer_size: int | None = None,
        read_buffer_size: int | None = None,
    ) -> None: ...
    def export(
        self,
        path: str,
        data: bytes,
        timeout: float | None,
        event_loop: object,
        callback: Callable[[int, str, bytes, bytes], object],
        local_timeout: float | None = None,
    ) -> ExportCall: ...
    @property
    def state(self) -> str: ...
    def close(self) -> None: ...

def quiesce(timeout: float = 2.0) -> None: ...
