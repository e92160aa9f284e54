"""A throw-away Linux network namespace holding several addresses of this machine.

Tests that need backends at *non-loopback* addresses (a Kubernetes API server
refuses loopback ones in EndpointSlices) can still keep all their traffic on
this machine: the addresses live in a private network namespace joined to the
host by a veth pair, so a connection to them never leaves the box::

    with NetNamespace(addresses=4) as ns:
        ns.addresses          # ['10.213.57.2', '10.213.57.3', '10.213.57.4', '10.213.57.5']
        ns.gateway            # '10.213.57.1', the host side of the veth
        subprocess.Popen([*ns.exec_prefix, "python", "-m", "e2e.sink", "--host", ns.addresses[0]])

What :meth:`NetNamespace.create` does (it needs root and ``ip`` from iproute2):

- picks a random ``/24`` in ``10.213.0.0/16`` that no route on the host
  overlaps (``ip -4 route show table all``), under a machine-wide lock so two
  test runs never pick the same one;
- ``ip netns add rl-<random>``, a veth pair ``rlh-<random>`` (host side,
  ``.1/24``) / ``rln-<random>`` (namespace side, ``.2`` onwards), and brings
  ``lo`` and both ends up. The connected ``/24`` route on the host sends the
  traffic for those addresses into the veth and nowhere else.

:meth:`NetNamespace.destroy` (also ``__exit__``) kills whatever still runs
inside the namespace, deletes the veth pair and the namespace; it is idempotent
and safe after a failed ``create``. A run killed before it could clean up
leaves a namespace whose lock file (``$TMPDIR/ringleader-netns/<name>.lock``)
nobody holds any more; the next :meth:`create` on the machine removes it.
Namespaces without such a lock file are never touched.

Processes started with :attr:`NetNamespace.exec_prefix` should also be asked to
die with their parent (:func:`die_with_parent` as ``preexec_fn``), so a killed
test run leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

POOL = ipaddress.IPv4Network("10.213.0.0/16")
NAME_PREFIX = "rl-"
_PR_SET_PDEATHSIG = 1


class NetnsError(RuntimeError):
    """The namespace could not be set up; the message says what to install or fix."""


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "ringleader-netns"


def die_with_parent() -> None:
    """``preexec_fn``: have the kernel SIGKILL the child when the test process dies (survives exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in any routing table of the host namespace, the default route excepted."""
    routes = json.loads(_ip("-4", "-j", "route", "show", "table", "all").stdout or "[]")
    networks = []
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            networks.append(ipaddress.ip_network(dst, strict=False))
    return [n for n in networks if isinstance(n, ipaddress.IPv4Network)]


def free_subnet(rnd: random.Random | None = None) -> ipaddress.IPv4Network:
    """A random /24 of :data:`POOL` that no host route overlaps."""
    taken = routed_networks()
    candidates = [s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)]
    if not candidates:
        raise NetnsError(f"every /24 of {POOL} is already routed on this host")
    return (rnd or random.SystemRandom()).choice(candidates)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise subnet choice and creation across concurrent test processes."""
    lock_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir() / ".create.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class NetNamespace:
    """A network namespace with ``addresses`` IPv4 addresses reachable from the host; see the module docstring."""

    def __init__(self, addresses: int = 4) -> None:
        if not 1 <= addresses <= 250:
            raise ValueError("addresses must be between 1 and 250")
        self.count = addresses
        suffix = os.urandom(3).hex()
        self.name = f"{NAME_PREFIX}{suffix}"
        self.host_link = f"rlh-{suffix}"
        self.ns_link = f"rln-{suffix}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self.addresses: list[str] = []
        self._lock_fd: int | None = None

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.name]

    @property
    def lock_path(self) -> Path:
        return lock_dir() / f"{self.name}.lock"

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> NetNamespace:
        return self.create()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    def create(self) -> NetNamespace:
        if shutil.which("ip") is None:
            raise NetnsError("the `ip` command is missing: install iproute2 (apt-get install iproute2)")
        if os.geteuid() != 0:
            raise NetnsError("creating a network namespace needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
        try:
            with _machine_lock():
                remove_abandoned()
                # Held for the namespace's whole life: a free lock marks a leftover of a killed run.
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                self.subnet = free_subnet()
                hosts = list(self.subnet.hosts())
                self.gateway = str(hosts[0])
                self.addresses = [str(h) for h in hosts[1 : 1 + self.count]]
                _ip("netns", "add", self.name)
                _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link, "netns", self.name)
                _ip("addr", "add", f"{self.gateway}/24", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            for address in self.addresses:
                _ip("-n", self.name, "addr", "add", f"{address}/24", "dev", self.ns_link)
            _ip("-n", self.name, "link", "set", self.ns_link, "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def pids(self) -> list[int]:
        """Processes running inside the namespace."""
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def destroy(self) -> None:
        """Kill what runs inside, delete the veth pair and the namespace. Idempotent."""
        _teardown(self.name, self.host_link)
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


def _teardown(name: str, host_link: str) -> None:
    """Everything of namespace ``name``, whether it fully exists or not."""
    if name in _ip("netns", "list", check=False).stdout.split():
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    # Deleting one end of a veth pair deletes both; deleting the namespace alone frees its
    # interfaces (and the host route) only asynchronously.
    _ip("link", "del", host_link, check=False)
    _ip("netns", "del", name, check=False)


def remove_abandoned() -> None:
    """Tear down namespaces whose lock file no live process holds (runs killed before cleanup)."""
    for lock in lock_dir().glob(f"{NAME_PREFIX}*.lock"):
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live run's namespace
        name = lock.name.removesuffix(".lock")
        _teardown(name, "rlh-" + name.removeprefix(NAME_PREFIX))
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)
