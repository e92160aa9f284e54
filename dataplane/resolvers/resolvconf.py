"""The parts of /etc/resolv.conf a stub resolver needs: nameservers, ``search``, ``ndots``.

For SRV lookups without a configured ``server``, the ``dns`` resolver asks the
nameservers listed here in order and tries names in glibc's (and Go's) order::

    conf = ResolvConf.load()            # a missing file means no nameservers
    conf.nameservers                    # (("10.96.0.10", 53),)  always port 53
    conf.candidates("_otlp._tcp.tier2") # with the search domains, by ndots
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ResolvConf:
    """The parts of resolv.conf(5) a stub resolver needs."""

    nameservers: tuple[tuple[str, int], ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1

    @classmethod
    def load(cls, path: str = "/etc/resolv.conf") -> ResolvConf:
        """Read ``path``; a missing file means no nameservers (callers report that)."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return cls.parse(f.read())
        except FileNotFoundError:
            return cls()

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        nameservers: list[tuple[str, int]] = []
        search: tuple[str, ...] = ()
        ndots = 1
        for raw in text.splitlines():
            words = raw.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            key, args = words[0], words[1:]
            if key == "nameserver" and args:
                # Strip a zone index (fe80::1%eth0): asyncio cannot connect with it.
                nameservers.append((args[0].split("%", 1)[0], 53))
            elif key in ("search", "domain") and args:
                # The last of "search"/"domain" wins, as in glibc.
                search = tuple(a.rstrip(".") for a in (args if key == "search" else args[:1]))
            elif key == "options":
                for opt in args:
                    if opt.startswith("ndots:"):
                        with contextlib.suppress(ValueError):
                            ndots = max(0, min(15, int(opt[len("ndots:") :])))
        return cls(tuple(nameservers), search, ndots)

    def candidates(self, name: str) -> list[str]:
        """The names to try for ``name``, in order, as glibc does: an absolute name
        (trailing dot) as is; a name with at least ``ndots`` dots first as is, then
        with each search domain; a shorter name with the search domains first."""
        if name.endswith("."):
            return [name.rstrip(".")]
        with_search = [f"{name}.{domain}" for domain in self.search if domain]
        if name.count(".") >= self.ndots:
            return [name, *with_search]
        return [*with_search, name]
