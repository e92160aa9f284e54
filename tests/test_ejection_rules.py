"""The ejection rules, driven through the Ejector's own inputs (the outcomes the data path reports).

tests/test_ejection.py proves the whole behaviour with real processes; these pin down each
rule of dataplane/ejection.py with short windows: who is ejected, who is not, and how a
backend comes back (probed for real, against a real backend process).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dataplane.config_model import EjectionConfig, OTLPExporterConfig, TLSConfig
from dataplane.ejection import Ejector, grpc_probe
from dataplane.telemetry import Telemetry
from tests.harness import SinkProcess, free_port

WINDOW = 0.3
ENDPOINTS = ("a:4317", "b:4317", "c:4317", "d:4317")


def _ejector(probe=None, **cfg: object) -> tuple[Ejector, list[int], Telemetry]:
    changes: list[int] = []
    telemetry = Telemetry()
    settings = {"window": WINDOW, "consecutive_failures": 3, "cooldown": 60.0, **cfg}

    async def never(endpoint: str, timeout: float) -> bool:
        return False

    ejector = Ejector(EjectionConfig(**settings), telemetry, probe or never, lambda: changes.append(1))  # type: ignore[arg-type]
    ejector.eligible(ENDPOINTS)
    return ejector, changes, telemetry


def _run(coro) -> None:
    asyncio.run(coro)


def test_failures_eject_only_after_a_window_without_success() -> None:
    async def scenario() -> None:
        ejector, changes, telemetry = _ejector()
        for _ in range(10):
            ejector.export_failed("a:4317")
        assert ejector.eligible(ENDPOINTS) == ENDPOINTS, "ejected before the window passed"
        await asyncio.sleep(WINDOW)
        ejector.export_failed("a:4317")
        assert ejector.eligible(ENDPOINTS) == ("b:4317", "c:4317", "d:4317")
        assert changes == [1]
        assert (
            telemetry.registry.get_sample_value(
                "ringleader_backend_ejections_total", {"endpoint": "a:4317", "reason": "export_failures"}
            )
            == 1
        )
        assert telemetry.registry.get_sample_value("ringleader_backend_ejected", {"endpoint": "a:4317"}) == 1
        await ejector.close()

    _run(scenario())


def test_a_slow_backend_that_still_delivers_is_never_ejected_for_its_full_queue() -> None:
    async def scenario() -> None:
        ejector, changes, _ = _ejector()
        deadline = time.monotonic() + 3 * WINDOW
        while time.monotonic() < deadline:
            ejector.queue_full("a:4317")
            ejector.export_failed("a:4317")
            ejector.export_succeeded("a:4317")  # slow, but it delivers
            await asyncio.sleep(WINDOW / 5)
        assert ejector.eligible(ENDPOINTS) == ENDPOINTS and not changes
        await asyncio.sleep(WINDOW)
        ejector.queue_full("a:4317")  # now no progress for a window, and refusing data
        assert "a:4317" in ejector.ejected and ejector.ejected["a:4317"]["reason"] == "queue_full"
        await ejector.close()

    _run(scenario())


def test_never_more_than_max_ejected_percent_and_never_the_last_backend() -> None:
    async def scenario() -> None:
        ejector, _, telemetry = _ejector(max_ejected_percent=50)
        await asyncio.sleep(WINDOW)
        for endpoint in ENDPOINTS:
            for _ in range(3):
                ejector.export_failed(endpoint)
        assert len(ejector.ejected) == 2  # 50% of 4
        skipped = sum(
            telemetry.registry.get_sample_value("ringleader_backend_ejections_skipped_total", {"endpoint": ep}) or 0
            for ep in ENDPOINTS
        )
        assert skipped >= 2
        await ejector.close()

        single, _, _ = _ejector(max_ejected_percent=100)
        single.eligible(("only:4317",))
        await asyncio.sleep(WINDOW)
        for _ in range(5):
            single.export_failed("only:4317")
        assert not single.ejected
        await single.close()

    _run(scenario())


def test_disabled_ejects_nothing() -> None:
    async def scenario() -> None:
        ejector, changes, _ = _ejector(enabled=False)
        await asyncio.sleep(WINDOW)
        for _ in range(10):
            ejector.export_failed("a:4317")
            ejector.queue_full("a:4317")
        assert not ejector.ejected and not changes
        await ejector.close()

    _run(scenario())


def test_an_ejected_backend_returns_when_a_real_probe_is_answered(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "probed").start()
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    probe = grpc_probe(OTLPExporterConfig(tls=TLSConfig(insecure=True)))

    async def scenario() -> None:
        changes: list[int] = []
        ejector = Ejector(
            EjectionConfig(window=WINDOW, consecutive_failures=1, cooldown=0.2, probe_interval=0.2, probe_timeout=1.0),
            Telemetry(),
            probe,
            lambda: changes.append(1),
        )
        endpoints = (sink.endpoint, dead, "x:4317", "y:4317")
        ejector.eligible(endpoints)
        await asyncio.sleep(WINDOW)
        ejector.export_failed(sink.endpoint)
        ejector.export_failed(dead)
        assert set(ejector.ejected) == {sink.endpoint, dead}
        deadline = time.monotonic() + 20
        while sink.endpoint in ejector.ejected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert ejector.eligible(endpoints) == (sink.endpoint, "x:4317", "y:4317")  # back; the dead one stays out
        assert len(changes) == 3  # two ejections, one return
        # Leaving the resolved set forgets an ejected backend (and stops probing it).
        assert ejector.eligible((sink.endpoint, "x:4317")) == (sink.endpoint, "x:4317")
        assert not ejector.ejected
        await ejector.close()

    try:
        asyncio.run(scenario())
        assert any(sig == "traces" and payload == b"" for sig, payload in sink.records()), "no probe reached it"
    finally:
        sink.stop()


def test_any_answer_is_a_live_backend_and_no_answer_is_not(tmp_path: Path) -> None:
    # A tier-2 collector without a traces pipeline answers the probe UNIMPLEMENTED: it serves.
    refusing = SinkProcess(tmp_path, "refusing", "--reject-all", "UNIMPLEMENTED").start()
    probe = grpc_probe(OTLPExporterConfig(tls=TLSConfig(insecure=True)))
    try:
        async def answers(endpoint: str) -> bool:
            return await probe(endpoint, 5.0)

        assert asyncio.run(answers(refusing.endpoint)) is True
        assert asyncio.run(answers(f"127.0.0.1:{free_port()}")) is False
    finally:
        refusing.stop()
