"""Print the hash-ring comparison table (Markdown) used in docs/ring.md.

    python -m e2e.ring_table [--sizes 3,10,30,100,300] [--trials 3]

For every backend count N and both algorithms: max/avg and min/avg share of the
hash space (exact), keys moved when adding one backend and when removing one,
as a multiple of the ideal (1/(N+1) when adding; the removed backend's own
share when removing), worst over ``--trials`` choices of the backend added or
removed, the build time and the lookup cost of a 16-byte trace ID.

The fleet is N pod IPs ``10.42.x.y:4317``. Added backends are fresh IPs after
the fleet; removed ones are spread over the sorted list (first, middle, last...).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dataplane.ring import build_ring, moved_fraction


def fleet(n: int, offset: int = 0) -> list[str]:
    return [f"10.42.{(i + offset) // 250}.{(i + offset) % 250 + 1}:4317" for i in range(n)]


def lookup_ns(algorithm: str, endpoints: list[str], keys: list[bytes]) -> float:
    lookup = build_ring(algorithm, endpoints).lookup
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for k in keys:
            lookup(k)
        best = min(best, time.perf_counter() - t0)
    return best / len(keys) * 1e9


def row(algorithm: str, n: int, trials: int, keys: list[bytes]) -> str:
    eps = fleet(n)
    t0 = time.perf_counter()
    base = build_ring(algorithm, eps)
    build_s = time.perf_counter() - t0
    shares = base.shares()
    add_worst = 0.0
    for t in range(trials):
        grown = build_ring(algorithm, [*eps, fleet(1, offset=n + t)[0]])
        add_worst = max(add_worst, moved_fraction(base, grown) * (n + 1))
    rem_worst = 0.0
    ordered = sorted(eps)
    for t in range(trials):
        victim = ordered[(t * (n - 1)) // max(1, trials - 1)] if trials > 1 else ordered[0]
        shrunk = build_ring(algorithm, [e for e in eps if e != victim])
        rem_worst = max(rem_worst, moved_fraction(base, shrunk) / shares[victim])
    return (
        f"| {algorithm} | {n} | {max(shares.values()) * n:.3f} | {min(shares.values()) * n:.3f} "
        f"| {add_worst:.3f} | {rem_worst:.3f} | {build_s * 1000:.0f} | {lookup_ns(algorithm, eps, keys):.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sizes", default="3,10,30,100,300")
    ap.add_argument("--trials", type=int, default=3, help="backends added/removed per N (worst is shown)")
    ap.add_argument("--algorithms", default="ringleader,upstream,upstream-v0.152", help="comma-separated")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    keys = [os.urandom(16) for _ in range(50_000)]
    print(f"Python {sys.version.split()[0]}; worst of {args.trials} added / removed backends per row.\n")
    print(
        "| algorithm | N | max/avg | min/avg | moved on add (x ideal) "
        "| moved on remove (x ideal) | build ms | lookup ns |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for algorithm in args.algorithms.split(","):
        for n in sizes:
            print(row(algorithm, n, args.trials, keys), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
