"""``ringleader-dataplane ring``: ask the hash ring who owns a key, and how even it is.

For operators debugging skew or a "why did this trace land there" question::

    ringleader-dataplane ring --endpoints a:4317,b:4317 4bf92f3577b34da6a3ce929d0e0e4736
    ringleader-dataplane ring --endpoints a:4317,b:4317 --algorithm upstream checkout
    ringleader-dataplane ring --config config.yaml --signal logs --routing-key service checkout
    ringleader-dataplane ring --config config.yaml --stats

A KEY is a routing-key *value*, and the bytes hashed are built from it exactly as the data
plane builds them when it routes (the same splitter code runs on a one-item request):

- ``traceID``: 32 hex characters; traces hash the 16 raw bytes, logs the 32 lowercase hex
  characters (as upstream);
- ``service``: a ``service.name``; traces hash ``service.name=<name>|``, logs and metrics the
  bare name (as upstream);
- ``metric``: a metric name; ``resource`` / ``attributes``: ``name=value`` pairs separated by
  commas (``streamID`` depends on a whole data point: use ``--hex``).

``--routing-key`` and ``--signal`` (default ``traces``) say which; without ``--routing-key`` the
config's routing key for the signal is used, and without a config a 32-hex KEY is a trace ID
and anything else a service name. ``--text`` and ``--hex`` skip all that and hash the KEY's
UTF-8 bytes or hex bytes as they are.

``--stats`` prints each endpoint's exact share of the hash space and the
max/avg and min/avg ratios. ``--config`` reads the endpoints (and
``ring_algorithm``) from a data-plane config with a static resolver; for other
resolvers pass the endpoints you see in ``/debug/ring`` with ``--endpoints``.

Output is one tab-separated line per key: key, kind (the routing key, or text/hex), owner.
``--json`` also shows the hashed bytes (``hashed``, hex).
Bad input prints one error line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn, TextIO

from .config_model import ROUTING_KEYS_BY_SIGNAL, SIGNALS
from .ring import ALGORITHMS, NoBackendsError, Ring, build_ring
from .routing import UnroutableValueError, key_bytes

PROG = "ringleader-dataplane ring"


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="Show which backend owns each KEY, or the ring's balance (--stats).",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--endpoints", help="comma-separated backend endpoints, e.g. a:4317,b:4317")
    src.add_argument("--config", metavar="FILE", help="data-plane config file with a static resolver")
    p.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=None,
        help="ring algorithm (default: the config's ring_algorithm, else ringleader)",
    )
    p.add_argument("--signal", choices=SIGNALS, default="traces", help="signal whose routing to follow")
    all_keys = sorted({k for keys in ROUTING_KEYS_BY_SIGNAL.values() for k in keys})
    p.add_argument(
        "--routing-key",
        choices=all_keys,
        default=None,
        help="what each KEY is (default: the config's routing key; else trace ID if 32 hex, else service)",
    )
    p.add_argument(
        "--routing-attributes",
        default="",
        help="comma-separated attribute names, for --routing-key attributes (default: the config's)",
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--text", action="store_true", help="hash every KEY's UTF-8 bytes as they are")
    kind.add_argument("--hex", action="store_true", help="hash every KEY's hex bytes as they are")
    p.add_argument("--stats", action="store_true", help="print the hash-space share of every endpoint")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("keys", nargs="*", metavar="KEY")
    return p


def parse_key(
    raw: str,
    force_text: bool = False,
    force_hex: bool = False,
    *,
    signal: str = "traces",
    routing_key: str | None = None,
    routing_attributes: tuple[str, ...] = (),
) -> tuple[str, bytes]:
    """Return (kind, hashed bytes) for a KEY argument; raises UsageError for a bad KEY."""
    if force_text:
        return "text", raw.encode()
    if force_hex:
        try:
            return "hex", bytes.fromhex(raw)
        except ValueError:
            raise UsageError(f"key {raw!r} is not valid hex") from None
    if routing_key is None:
        routing_key = "traceID" if _is_trace_id(raw) and signal != "metrics" else "service"
    try:
        return routing_key, key_bytes(signal, routing_key, raw, routing_attributes)
    except UnroutableValueError as exc:
        raise UsageError(f"key {raw!r}: {exc}") from None


def _is_trace_id(raw: str) -> bool:
    if len(raw) != 32:
        return False
    try:
        bytes.fromhex(raw)
    except ValueError:
        return False
    return True


def _endpoints_from_config(path: str, signal: str) -> tuple[list[str], str, str, tuple[str, ...]]:
    # Imported lazily: the ring subcommand must work without the config stack.
    from .config import ConfigError, load_config
    from .config_model import StaticResolverConfig

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    resolver = cfg.exporter.resolver
    if not isinstance(resolver, StaticResolverConfig):
        kind = type(resolver).__name__.removesuffix("ResolverConfig").lower()
        raise UsageError(
            f"{path} uses the {kind} resolver, whose endpoints are only known at run time; "
            "pass them with --endpoints (see /debug/ring on a running instance)"
        )
    exporter = cfg.exporter
    key = exporter.routing_key_for(signal)
    return list(resolver.hostnames), exporter.ring_algorithm, key, exporter.routing_attributes


def _stats_table(ring: Ring, out: TextIO) -> None:
    shares = ring.shares()
    avg = 1 / len(shares)
    width = max(len("endpoint"), *(len(ep) for ep in shares))
    out.write(f"{'endpoint':<{width}}  {'share':>8}  {'share/avg':>9}\n")
    for ep, share in shares.items():
        out.write(f"{ep:<{width}}  {share * 100:>7.3f}%  {share / avg:>9.4f}\n")
    values = shares.values()
    out.write(
        f"algorithm={ring.algorithm} backends={len(shares)} "
        f"max/avg={max(values) / avg:.4f} min/avg={min(values) / avg:.4f}\n"
    )


def run(argv: list[str], out: TextIO) -> int:
    args = _parser().parse_args(argv)
    routing_key: str | None = args.routing_key
    attrs = tuple(a.strip() for a in args.routing_attributes.split(",") if a.strip())
    if args.config:
        endpoints, config_algorithm, config_key, config_attrs = _endpoints_from_config(args.config, args.signal)
        routing_key = routing_key or config_key
        attrs = attrs or config_attrs
    elif args.endpoints is not None:
        endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
        config_algorithm = "ringleader"
    else:
        raise UsageError("no endpoints: pass --endpoints a:4317,b:4317 or --config FILE")
    if not args.keys and not args.stats:
        raise UsageError("nothing to do: pass one or more KEYs and/or --stats")
    if routing_key == "attributes" and not attrs:
        raise UsageError("--routing-key attributes needs --routing-attributes name[,name...]")
    how = {"signal": args.signal, "routing_key": routing_key, "routing_attributes": attrs}
    keys = [(raw, *parse_key(raw, args.text, args.hex, **how)) for raw in args.keys]
    try:
        ring = build_ring(args.algorithm or config_algorithm, endpoints)
    except NoBackendsError:
        raise UsageError("no endpoints: the endpoint list is empty") from None

    if args.json:
        doc: dict[str, object] = {
            "owners": [
                {"key": raw, "kind": kind, "hashed": key.hex(), "owner": ring.owner_of(key)} for raw, kind, key in keys
            ]
        }
        if args.stats:
            doc["ring"] = ring.describe()
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    for raw, kind, key in keys:
        out.write(f"{raw}\t{kind}\t{ring.owner_of(key)}\n")
    if args.stats:
        if keys:
            out.write("\n")
        _stats_table(ring, out)
    return 0


def main(argv: list[str]) -> int:
    try:
        return run(argv, sys.stdout)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
