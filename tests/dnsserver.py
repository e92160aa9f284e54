"""A real DNS server for tests: dnsmasq on loopback, with records the test controls.

    with DNSServer(tmp_path) as dns:                 # 127.0.0.1:<free port>
        dns.set_hosts("backends.tier2.test", ["127.0.1.1", "2001:db8::1"])
        dns.set_srv("_otlp._tcp.tier2.test", [SRV("b0.tier2.test", 4317)])
        cfg = DNSResolverConfig("backends.tier2.test", server=dns.server)
        ...
        dns.stop()    # queries now fail (connection refused)
        dns.start()   # same address and port again

The server answers only from its own files in ``workdir``: no /etc/hosts, no
/etc/resolv.conf, no upstream servers, and ``local=/test/`` so that unknown
names under ``.test`` get NXDOMAIN instead of REFUSED. Use names under ``.test``.

Changing records:

- :meth:`DNSServer.set_hosts` / :meth:`DNSServer.remove_host` rewrite the
  addn-hosts file and send SIGHUP; they return once dnsmasq has logged that it
  re-read the file, so the next query sees the new records;
- :meth:`DNSServer.set_srv` and :meth:`DNSServer.set_cname` rewrite the config
  file and restart dnsmasq on the same port (it reads them only at start);
- :meth:`DNSServer.pause` / :meth:`DNSServer.resume` (SIGSTOP/SIGCONT) make the
  server unresponsive without closing its sockets: queries time out.

dnsmasq comes from the Debian package ``dnsmasq-base`` (no service, just the
binary). Binding port 53 (``port=53``) needs root or CAP_NET_BIND_SERVICE.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "dnsmasq not found: install it with `apt-get install dnsmasq-base`"
_READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class SRV:
    """One SRV record of a :class:`DNSServer`."""

    target: str
    port: int
    priority: int = 0
    weight: int = 0


class _AddressInUse(Exception):
    pass


def find_dnsmasq() -> str:
    """The dnsmasq binary (it lives in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    return found


def _free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (dnsmasq binds both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free UDP+TCP port on {address}")


class DNSServer:
    """One dnsmasq process serving the records set through this object."""

    def __init__(self, workdir: Path, *, address: str = "127.0.0.1", port: int | None = None) -> None:
        self.binary = find_dnsmasq()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.port = port if port is not None else _free_port(address)
        # An auto-chosen port may be taken by someone else before dnsmasq binds it;
        # until the first successful start we may pick another one.
        self._may_repick_port = port is None
        self.hosts_file = self.workdir / "hosts"
        self.conf_file = self.workdir / "dnsmasq.conf"
        self._hosts: dict[str, list[str]] = {}
        self._srv: dict[str, list[SRV]] = {}
        self._cnames: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None
        self._log: list[str] = []
        self._log_changed = threading.Condition()
        self._write_hosts()

    # -- addresses ----------------------------------------------------------------------
    @property
    def server(self) -> str:
        """``host:port`` to put in ``resolver.dns.server``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def log(self) -> str:
        with self._log_changed:
            return "".join(self._log)

    # -- records ------------------------------------------------------------------------
    def set_hosts(self, name: str, addresses: Iterable[str]) -> None:
        """Make ``name`` resolve to exactly ``addresses`` (A and AAAA records)."""
        self._hosts[name] = list(addresses)
        self._reload_hosts()

    def remove_host(self, name: str) -> None:
        """Remove ``name``: it now gets NXDOMAIN."""
        self._hosts.pop(name, None)
        self._reload_hosts()

    def set_srv(self, name: str, records: Sequence[SRV]) -> None:
        """Replace the SRV records of ``name`` (restarts a running server)."""
        if records:
            self._srv[name] = list(records)
        else:
            self._srv.pop(name, None)
        if self.running:
            self.restart()

    def set_cname(self, alias: str, target: str) -> None:
        """Make ``alias`` a CNAME of ``target`` (restarts a running server)."""
        self._cnames[alias] = target
        if self.running:
            self.restart()

    # -- process ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        for attempt in range(3):
            try:
                self._spawn()
                break
            except _AddressInUse:
                if not self._may_repick_port or attempt == 2:
                    raise RuntimeError(f"dnsmasq: {self.server} is in use:\n{self.log}") from None
                self.port = _free_port(self.address)
        self._may_repick_port = False  # from now on the server keeps its address

    def _spawn(self) -> None:
        self._write_conf()
        with self._log_changed:
            self._log.clear()
        self._proc = subprocess.Popen(
            [self.binary, "--keep-in-foreground", f"--conf-file={self.conf_file}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._pump = threading.Thread(target=self._pump_log, args=(self._proc,), daemon=True)
        self._pump.start()
        # "read <hosts>" is logged after the sockets are bound and the files loaded.
        try:
            self._wait_for_log(f"read {self.hosts_file}", 1, "start")
        except RuntimeError:
            self.stop()
            if "Address already in use" in self.log:
                raise _AddressInUse() from None
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Stop answering (SIGSTOP) while keeping the sockets open: queries time out."""
        assert self._proc is not None, "server not started"
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None, "server not started"
        os.kill(self._proc.pid, signal.SIGCONT)

    def __enter__(self) -> DNSServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------
    def _write_conf(self) -> None:
        lines = [
            f"port={self.port}",
            f"listen-address={self.address}",
            "bind-interfaces",  # only our address and port, never the wildcard
            "no-hosts",  # not /etc/hosts
            "no-resolv",  # not /etc/resolv.conf: no upstream servers at all
            "no-poll",
            "no-negcache",
            "local=/test/",  # NXDOMAIN, not REFUSED, for unknown names under .test
            f"addn-hosts={self.hosts_file}",
            "pid-file=",  # no pid file in /run
            "log-facility=-",  # log to stderr, which we read
        ]
        if os.geteuid() == 0:
            # As root dnsmasq would switch to "nobody", who cannot re-read our
            # private temp files on SIGHUP; stay the current user instead.
            lines.append("user=root")
        lines += [f"cname={alias},{target}" for alias, target in self._cnames.items()]
        for name, records in self._srv.items():
            lines += [f"srv-host={name},{r.target},{r.port},{r.priority},{r.weight}" for r in records]
        self._atomic_write(self.conf_file, "\n".join(lines) + "\n")

    def _write_hosts(self) -> None:
        text = "".join(f"{addr} {name}\n" for name, addrs in self._hosts.items() for addr in addrs)
        self._atomic_write(self.hosts_file, text)

    def _reload_hosts(self) -> None:
        self._write_hosts()
        if not self.running:
            return
        assert self._proc is not None
        needle = f"read {self.hosts_file}"
        with self._log_changed:
            seen = sum(line.count(needle) for line in self._log)
        os.kill(self._proc.pid, signal.SIGHUP)
        self._wait_for_log(needle, seen + 1, "reload")

    @staticmethod
    def _atomic_write(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def _pump_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._log_changed:
                self._log.append(line)
                self._log_changed.notify_all()
        with self._log_changed:
            self._log_changed.notify_all()

    def _wait_for_log(self, needle: str, count: int, what: str) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        with self._log_changed:
            while sum(line.count(needle) for line in self._log) < count:
                if self._proc is None or self._proc.poll() is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(
                        f"dnsmasq did not {what} within {_READY_TIMEOUT}s:\n{''.join(self._log)}"
                    )
                self._log_changed.wait(min(remaining, 0.1))
            else:
                return
        # dnsmasq exited: let the reader drain its last words before reporting them.
        if self._pump is not None:
            self._pump.join(timeout=5)
        raise RuntimeError(f"dnsmasq exited during {what}:\n{self.log}")
