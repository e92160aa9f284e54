"""``make demo``: the main job on the lab's real one-node cluster, summed up in one table.

It brings the lab up (or uses the one ``python -m e2e.lab up`` started), installs the pipeline of
:mod:`e2e.lab_pipeline` (3 tier-2 collectors doing tail sampling behind a headless Service, one
``LoadBalancingExporter`` with 2 Ringleader pods, a load-generator pod with 5 services), and prints spans
and traces per tier-2 pod, each pod's share against the ideal, traces seen on more than one tier-2 pod,
spans lost and duplicated, and the resource's status.  Exit status 0 only when nothing was lost,
duplicated or split.  ``make demo LOCAL=1`` runs the loopback demo (``e2e.demo``) on machines without root.

    python -m e2e.lab_demo [--traces 600] [--rate 100] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time

from e2e.lab import Lab, LabError
from e2e.lab_pipeline import Pipeline, Tally, deploy, remove, wait_for_delivery


def render(pipe: Pipeline, t: Tally, status: dict[str, object] | None, seconds: float) -> str:
    lines = []
    n = len(t.per_pod_spans) or 1
    total = sum(t.per_pod_spans.values()) or 1
    lines.append(f"{'tier-2 pod':<12} {'spans':>7} {'traces':>7} {'share':>7} {'ideal':>7}")
    for pod in sorted(t.per_pod_spans):
        share = t.per_pod_spans[pod] / total
        lines.append(f"{pod:<12} {t.per_pod_spans[pod]:>7} {t.per_pod_traces[pod]:>7} {share:>7.1%} {1 / n:>7.1%}")
    lines.append("")
    lines.append(f"sent by the SDK          {t.sent} spans in {t.traces_sent} traces "
                 f"({t.accepted} accepted by tier 1)")
    lines.append(f"traces on >1 tier-2 pod  {t.split_traces}")
    lines.append(f"spans lost               {t.lost}")
    lines.append(f"spans duplicated         {t.duplicated}")
    if t.unexpected:
        lines.append(f"spans nobody sent        {t.unexpected}")
    if status is None:
        lines.append("LoadBalancingExporter    (no status: " + "; ".join(pipe.notes) + ")")
    else:
        conditions: list[dict[str, object]] = list(status.get("conditions") or [])  # type: ignore[call-overload]
        conds = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
        lines.append(f"LoadBalancingExporter    {conds or status}")
    lines.append(f"verdict                  {'OK' if t.ok() else 'FAILED'} ({seconds:.0f}s from install to counts)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.lab_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--traces", type=int, default=600)
    p.add_argument("--rate", type=float, default=100.0, help="traces per second")
    p.add_argument("--keep", action="store_true", help="leave the pipeline (and a lab it started) running")
    args = p.parse_args(argv)
    lab = Lab.current()
    started_here = lab is None
    try:
        if lab is None:
            lab = Lab.up()
        else:
            lab.refresh_images()
        began = time.monotonic()
        pipe = deploy(lab)
        summary = pipe.run_load("demo", traces=args.traces, rate=args.rate)
        print(f"load generator: {summary}", file=sys.stderr)
        t = wait_for_delivery(pipe, ["demo"])
        status = pipe.resource_status() if pipe.operator else None
        print(render(pipe, t, status, time.monotonic() - began))
        if not args.keep:
            remove(pipe)
        return 0 if t.ok() else 1
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_here and lab is not None and not args.keep:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
