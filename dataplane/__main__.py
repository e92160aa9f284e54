"""``ringleader-dataplane``: the command line.

ringleader-dataplane --config config.yaml            run the data plane
ringleader-dataplane --config config.yaml --check-config
                                                     validate and exit (0 ok, 2 bad)
ringleader-dataplane ring --endpoints a,b,c KEY...   who owns a key (see docs/ring.md)
ringleader-dataplane ring --config config.yaml --stats
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from . import __version__

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=_LEVELS.get(level.lower(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Library chatter (grpc logs every event-loop lookup at debug) would drown our own logs.
    for noisy in ("grpc", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ring":
        from .ring_cli import main as ring_main

        return ring_main(args[1:])

    parser = argparse.ArgumentParser(
        prog="ringleader-dataplane",
        description="Trace-aware OTLP load balancer (tier 1 of tail sampling). "
        "Subcommand: 'ring' (inspect the hash ring; see 'ringleader-dataplane ring --help').",
    )
    parser.add_argument("--config", default=os.environ.get("RINGLEADER_CONFIG"), help="YAML config file")
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--version", action="version", version=f"ringleader {__version__}")
    ns = parser.parse_args(args)
    if not ns.config:
        parser.error("--config is required (or set RINGLEADER_CONFIG)")

    from .config import ConfigError, load_config

    try:
        cfg = load_config(ns.config)
    except ConfigError as exc:
        print(f"ringleader-dataplane: {exc}", file=sys.stderr)
        return 2
    if ns.check_config:
        print(f"config ok: {ns.config}")
        return 0
    _setup_logging(cfg.telemetry.log_level)

    from .app import DataPlane
    from .memory import tune_allocator

    tune_allocator()
    try:
        asyncio.run(DataPlane(cfg).run())
    except OSError as exc:
        logging.getLogger("ringleader").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
