"""``ringleader-dataplane ring``: ask the hash ring who owns a key, and how even it is.

For operators debugging skew or a "why did this trace land there" question::

    ringleader-dataplane ring --endpoints a:4317,b:4317 4bf92f3577b34da6a3ce929d0e0e4736
    ringleader-dataplane ring --endpoints a:4317,b:4317 --algorithm upstream checkout
    ringleader-dataplane ring --config config.yaml --stats

Keys:

- 32 hex characters are a trace ID and are hashed as its 16 raw bytes, exactly
  as ``routing_key: traceID`` routes spans;
- anything else is text, hashed as its UTF-8 bytes (as ``service`` routing
  hashes ``service.name``);
- ``--text`` forces text, ``--hex`` forces hex bytes of any length.

``--stats`` prints each endpoint's exact share of the hash space and the
max/avg and min/avg ratios. ``--config`` reads the endpoints (and
``ring_algorithm``) from a data-plane config with a static resolver; for other
resolvers pass the endpoints you see in ``/debug/ring`` with ``--endpoints``.

Output is one tab-separated line per key: key, kind (trace_id, text, hex), owner.
Bad input prints one error line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn, TextIO

from .ring import ALGORITHMS, NoBackendsError, Ring, build_ring

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
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--text", action="store_true", help="treat every KEY as UTF-8 text")
    kind.add_argument("--hex", action="store_true", help="treat every KEY as hex bytes")
    p.add_argument("--stats", action="store_true", help="print the hash-space share of every endpoint")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("keys", nargs="*", metavar="KEY")
    return p


def parse_key(raw: str, force_text: bool = False, force_hex: bool = False) -> tuple[str, bytes]:
    """Return (kind, bytes) for a KEY argument; raises UsageError for bad hex."""
    if force_text:
        return "text", raw.encode()
    if force_hex:
        try:
            return "hex", bytes.fromhex(raw)
        except ValueError:
            raise UsageError(f"key {raw!r} is not valid hex") from None
    if len(raw) == 32:
        try:
            return "trace_id", bytes.fromhex(raw)
        except ValueError:
            pass  # 32 characters that are not hex: a text key
    return "text", raw.encode()


def _endpoints_from_config(path: str) -> tuple[list[str], str]:
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
    return list(resolver.hostnames), cfg.exporter.ring_algorithm


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
    if args.config:
        endpoints, config_algorithm = _endpoints_from_config(args.config)
    elif args.endpoints is not None:
        endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
        config_algorithm = "ringleader"
    else:
        raise UsageError("no endpoints: pass --endpoints a:4317,b:4317 or --config FILE")
    if not args.keys and not args.stats:
        raise UsageError("nothing to do: pass one or more KEYs and/or --stats")
    keys = [(raw, *parse_key(raw, args.text, args.hex)) for raw in args.keys]
    try:
        ring = build_ring(args.algorithm or config_algorithm, endpoints)
    except NoBackendsError:
        raise UsageError("no endpoints: the endpoint list is empty") from None

    if args.json:
        doc: dict[str, object] = {
            "owners": [{"key": raw, "kind": kind, "owner": ring.owner_of(key)} for raw, kind, key in keys]
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
