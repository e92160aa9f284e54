"""``host:port`` text, read and written the way Go's ``net`` package does.

Every address Ringleader reads or prints goes through here: config values
(receiver and telemetry endpoints, static backends, the DNS server), the
listeners, and the backend endpoints the resolvers produce::

    >>> split_host_port("10.0.0.1:4317")
    ('10.0.0.1', '4317')
    >>> split_host_port("[fd00::1]:4317")
    ('fd00::1', '4317')
    >>> split_host_port("tier2") is None       # no port
    True
    >>> join_host_port("fd00::1", 4317)
    '[fd00::1]:4317'

IPv6 literals are written in brackets when a port follows them, as
``net.JoinHostPort`` does; a bare IPv6 literal without a port is never mistaken
for ``host:port``.
"""

from __future__ import annotations

__all__ = ["join_host_port", "listen_address", "parse_host_port", "split_host_port", "valid_port"]


def split_host_port(text: str) -> tuple[str, str] | None:
    """``host:port`` -> (host, port) as text, IPv6 hosts in brackets; None if there is no port.

    The port is not checked (see :func:`valid_port`); the host may be empty (``":4317"``).
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            return None
        return text[1:end], text[end + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def valid_port(text: str) -> bool:
    """Whether ``text`` is a decimal port between 1 and 65535."""
    return text.isdigit() and 1 <= int(text) <= 65535


def join_host_port(host: str, port: int | str) -> str:
    """Go's ``net.JoinHostPort``: brackets around IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_address(endpoint: str) -> tuple[str, int]:
    """A validated listen endpoint (``"0.0.0.0:4318"``, ``"[::]:4317"``, ``":8888"``) -> (host, port).

    An empty host listens on every IPv4 interface, as the collector's default
    endpoints do.
    """
    parts = split_host_port(endpoint)
    if parts is None or not parts[1].isdigit():
        raise ValueError(f'expected "host:port", got {endpoint!r}')
    return parts[0] or "0.0.0.0", int(parts[1])


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``"10.0.0.10:53"``, ``"[fd00::10]:53"``, ``"10.0.0.10"``, ``"fd00::10"`` -> (host, port).

    A host without a port gets ``default_port``; raises ValueError for anything else."""
    value = text.strip()
    parts = split_host_port(value)
    if parts is None:
        host, port_text = (value[1:-1] if value.startswith("[") and value.endswith("]") else value), ""
    else:
        host, port_text = parts
    if not host or any(ch.isspace() or ch in "[]/" for ch in host):
        raise ValueError(f"invalid address {text!r}")
    if port_text and not valid_port(port_text):
        raise ValueError(f"invalid port in address {text!r}")
    return host, int(port_text) if port_text else default_port
