"""The real Tongbu server for the benchmarks, as its own process (its CPU is what we measure).

It is `tongbu serve` (signaling.app.create_app on a TCP port) plus an admin API token
printed as one JSON line on stdout, so the bench drives the REST API right away.

With --instrument (bench/lessons.py only) it also wraps, in this process and at class
level, `Publication.on_rtp` and `SubscriberLeg.write_rtp` to time the forward path, keeps
an event-loop lag probe, and can run cProfile on the event loop; it serves the figures on
GET /bench/stats and /bench/profile. Production code is untouched; fanout runs without it.

    .venv/bin/python bench/_server.py --data-dir /tmp/x --port 8123 [--instrument]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from classroom.config import Settings
from classroom.users import create_user, issue_token
from signaling.app import create_app
from signaling.appkeys import DB


class ForwardTimer:
    """Forward-path timing, in the server process only when asked for."""

    def __init__(self) -> None:
        self.leg: list[float] = []  # on_rtp entry -> one leg's write_rtp done (SRTP+sendto)
        self.packet: list[float] = []  # on_rtp entry -> every sink done
        self.lag: list[float] = []  # how late a 5 ms sleep wakes: queueing before on_rtp
        # name -> [seconds, calls]: wall time inside a few calls of the forward path
        self.costs: dict[str, list[float]] = {}
        self.profile: cProfile.Profile | None = None

    def _costed(self, name: str, fn):  # type: ignore[no-untyped-def]
        cost = self.costs.setdefault(name, [0.0, 0])
        clock = time.perf_counter

        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            t0 = clock()
            result = fn(*args, **kwargs)
            cost[0] += clock() - t0
            cost[1] += 1
            return result

        return wrapper

    def install(self) -> None:
        from signaling.media.publication import Publication
        from signaling.media.subscription import SubscriberLeg

        on_rtp = Publication.on_rtp
        write_rtp = SubscriberLeg.write_rtp
        timer = self
        clock = time.perf_counter
        current = [0.0]

        async def timed_on_rtp(self, packet, arrival_time_ms):  # type: ignore[no-untyped-def]
            t0 = clock()
            current[0] = t0
            await on_rtp(self, packet, arrival_time_ms)
            if self._sinks:
                timer.packet.append(clock() - t0)

        async def timed_write_rtp(self, packet, keyframe):  # type: ignore[no-untyped-def]
            before = self.counters.packets
            await write_rtp(self, packet, keyframe)
            if self.counters.packets != before:
                timer.leg.append(clock() - current[0])

        Publication.on_rtp = timed_on_rtp  # type: ignore[method-assign]
        SubscriberLeg.write_rtp = timed_write_rtp  # type: ignore[method-assign]

        # Synchronous pieces of the forward path, to size candidate optimisations.
        import aiortc.rate
        import pylibsrtp

        import signaling.media.subscription

        estimator = aiortc.rate.RemoteBitrateEstimator
        estimator.add = self._costed("RemoteBitrateEstimator.add", estimator.add)
        signaling.media.subscription.current_ntp_time = self._costed(
            "current_ntp_time (subscription._send)", signaling.media.subscription.current_ntp_time)
        pylibsrtp.Session.protect = self._costed("srtp protect", pylibsrtp.Session.protect)
        pylibsrtp.Session.unprotect = self._costed("srtp unprotect",
                                                   pylibsrtp.Session.unprotect)
        from aiortc.rtp import RtpPacket

        RtpPacket.parse = classmethod(  # type: ignore[method-assign]
            self._costed("RtpPacket.parse", RtpPacket.parse.__func__))  # type: ignore[attr-defined]

    async def lag_probe(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lag.append(time.perf_counter() - t0 - 0.005)

    def take(self) -> dict[str, object]:
        result = {
            "leg": _summary(self.leg),
            "packet": _summary(self.packet),
            "lag": _summary(self.lag),
            "costs": {name: {"seconds": round(c[0], 4), "calls": int(c[1]),
                             "us_per_call": round(c[0] / c[1] * 1e6, 2) if c[1] else 0}
                      for name, c in self.costs.items()},
        }
        self.leg, self.packet, self.lag = [], [], []
        for cost in self.costs.values():
            cost[0], cost[1] = 0.0, 0
        return result


def _summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99),
            "p999_ms": at(0.999), "max_ms": round(ordered[-1] * 1000, 3)}


def bench_routes(app: web.Application, timer: ForwardTimer) -> None:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(timer.take())

    async def profile(request: web.Request) -> web.Response:
        action = request.query.get("action", "start")
        if action == "start":
            # CPU time of the loop's thread, not wall time: other processes on the box
            # would otherwise show up inside whichever call they preempted
            timer.profile = cProfile.Profile(time.thread_time)
            timer.profile.enable()
            return web.json_response({"profiling": True})
        assert timer.profile is not None
        timer.profile.disable()
        out = io.StringIO()
        stats_ = pstats.Stats(timer.profile, stream=out)
        stats_.sort_stats(request.query.get("sort", "tottime")).print_stats(
            int(request.query.get("top", "30")))
        timer.profile = None
        return web.Response(text=out.getvalue())

    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/profile", profile)


async def serve(args: argparse.Namespace) -> None:
    timer = ForwardTimer()
    if args.instrument:
        timer.install()
    settings = Settings(data_dir=args.data_dir, host="127.0.0.1", port=args.port,
                        secret_key=b"b" * 32)
    app = create_app(settings)
    if args.instrument:
        bench_routes(app, timer)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True).start()
    async with app[DB]() as db:
        user = await create_user(db, username="bench-admin", password="bench-password-1",
                                 role="admin")
        token = await issue_token(db, user, name="bench")
    print(json.dumps({"port": args.port, "token": token}), flush=True)
    probe = asyncio.ensure_future(timer.lag_probe()) if args.instrument else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if probe is not None:
        probe.cancel()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instrument", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
