"""An emulated rural line between this host and a classroom box, for tests and benches.

`tc netem` is missing from these kernels, so the line is built from what works:

- a network namespace for the box, joined to the host by a veth pair (the box's address
  is `.2`, the host's `.1` of a /24 of its own);
- `tbf` on each end of the pair: the line's rate and its queue (a packet that would wait
  longer than `queue_ms` is dropped, as a DSL modem's buffer drops it);
- an NFQUEUE process inside the namespace (the `netfilterqueue` package; iptables sends
  it every packet the box sends or receives) that delays each by `delay_ms` ± `jitter_ms`
  (never reordering: a later packet leaves after an earlier one), drops at random
  (`loss`) or in bursts (Gilbert-Elliott: `burst_loss` is the loss in the bad state, which
  is entered with probability `burst_enter` per packet and left with `burst_leave`), and
  drops everything during outages.

Profiles from the seed plans (docs/PERFORMANCE.md "Rural lines"): `teaching-point`
(教学点, 4 Mbit/s), `rural-school` (5 Mbit/s per class), `bad-day` (1 Mbit/s, 8 % loss in
bursts), `clean` (a LAN). Schedules change a running line: `line.outage(10)` cuts it for
10 s, `line.set_rate(1000)` steps its rate.

By hand (root):

    .venv/bin/python -m bench.line up --profile teaching-point --name tb-rural
    ip netns exec tb-rural .venv/bin/tongbu agent --server http://10.231.7.1:8080 ...
    .venv/bin/python -m bench.line outage --name tb-rural --seconds 10
    .venv/bin/python -m bench.line echo --profile bad-day    # what a line does, measured

In code: `with EmulatedLine.up(PROFILES["teaching-point"]) as line:` then run the box with
`line.exec_prefix`, and reach the host at `line.host_ip`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
UPLINK_QUEUE, DOWNLINK_QUEUE = 1, 2  # NFQUEUE numbers, inside the namespace


@dataclass(frozen=True)
class Direction:
    """What one direction of the line does to packets."""

    rate_kbps: int = 0  # 0: no rate limit
    queue_ms: int = 200  # how long a packet may wait for the rate before it is dropped
    delay_ms: float = 0.0  # one way
    jitter_ms: float = 0.0  # uniform in ±jitter_ms, never reordering
    loss: float = 0.0  # random loss, 0..1
    burst_enter: float = 0.0  # per packet, good -> bad (Gilbert-Elliott)
    burst_leave: float = 1.0  # per packet, bad -> good
    burst_loss: float = 0.0  # loss while bad


@dataclass(frozen=True)
class Profile:
    name: str
    up: Direction  # the box sending (its camera and microphone)
    down: Direction  # the box receiving (the lesson)


def _both(name: str, **kw: Any) -> Profile:
    return Profile(name, Direction(**kw), Direction(**kw))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        _both("clean"),
        # The line (issue 12): 4 Mbit/s each way, 50 ± 10 ms, 3 % random loss.
        _both("teaching-point", rate_kbps=4000, queue_ms=200, delay_ms=50, jitter_ms=10,
              loss=0.03),
        _both("rural-school", rate_kbps=5000, queue_ms=200, delay_ms=30, jitter_ms=5,
              loss=0.01),
        # 8 % of packets lost, in bursts of ~4 (bad state: 1/4 leave, all lost; entered
        # 1 in 46: 0.0217 / (0.0217 + 0.25) = 8 % of the time).
        _both("bad-day", rate_kbps=1000, queue_ms=300, delay_ms=80, jitter_ms=20,
              burst_enter=0.0217, burst_leave=0.25, burst_loss=1.0),
    )
}


# ------------------------------------------------------------------ the shaper process


class Shaper:
    """One direction's delay and loss, for packets from one NFQUEUE. Pure decisions (the
    process below applies them), so they are tested without a kernel."""

    def __init__(self, direction: Direction, rng: random.Random) -> None:
        self.direction = direction
        self.rng = rng
        self.bad = False
        self.last_release = 0.0
        self.outage_until = 0.0
        self.passed = self.dropped = 0

    def release_at(self, now: float) -> float | None:
        """When to let this packet go (monotonic seconds), or None to drop it."""
        d = self.direction
        if now < self.outage_until:
            self.dropped += 1
            return None
        if self.bad:
            self.bad = self.rng.random() >= d.burst_leave
        else:
            self.bad = self.rng.random() < d.burst_enter
        lost = d.burst_loss if self.bad else d.loss
        if lost and self.rng.random() < lost:
            self.dropped += 1
            return None
        delay = d.delay_ms + (self.rng.uniform(-d.jitter_ms, d.jitter_ms) if d.jitter_ms else 0)
        self.last_release = max(now + max(0.0, delay) / 1000, self.last_release)
        self.passed += 1
        return self.last_release


def _run_shaper(spec: dict[str, Any], control: Path) -> None:
    """Inside the namespace: bind both queues and apply each packet's verdict, on time.
    `control` is a file the controller rewrites ({"outage_s": n, "seq": k}); read each
    50 ms. Counters go to `control`.stats on SIGTERM."""
    from netfilterqueue import NetfilterQueue  # only here: the package needs libnetfilter_queue

    rng = random.Random(spec.get("seed"))
    shapers = {UPLINK_QUEUE: Shaper(Direction(**spec["up"]), rng),
               DOWNLINK_QUEUE: Shaper(Direction(**spec["down"]), rng)}
    loop = asyncio.new_event_loop()
    queues = []
    for number, shaper in shapers.items():
        def handle(packet: Any, shaper: Shaper = shaper) -> None:
            at = shaper.release_at(time.monotonic())
            if at is None:
                packet.drop()
                return
            wait = at - time.monotonic()
            if wait <= 0.0005:
                packet.accept()
                return
            packet.retain()
            loop.call_later(wait, packet.accept)

        queue = NetfilterQueue()
        queue.bind(number, handle, max_len=10_000)
        queues.append(queue)
        sock = queue.get_fd()
        loop.add_reader(sock, queue.run, False)

    seen = -1

    def poll_control() -> None:
        nonlocal seen
        try:
            order = json.loads(control.read_text() or "{}")
        except (OSError, ValueError):
            order = {}
        if order.get("seq", -1) != seen:
            seen = order.get("seq", -1)
            until = time.monotonic() + float(order.get("outage_s", 0))
            for shaper in shapers.values():
                shaper.outage_until = until
        loop.call_later(0.05, poll_control)

    def stop() -> None:
        stats = {("up" if n == UPLINK_QUEUE else "down"): {"passed": s.passed,
                                                           "dropped": s.dropped}
                 for n, s in shapers.items()}
        control.with_suffix(".stats").write_text(json.dumps(stats))
        loop.stop()

    loop.add_signal_handler(signal.SIGTERM, stop)
    poll_control()
    control.with_suffix(".ready").write_text("1")
    try:
        loop.run_forever()
    finally:
        for queue in queues:
            queue.unbind()


# ------------------------------------------------------------------ the controller


def order_outage(control: Path, seconds: float) -> None:
    """Tell a line's shaper (through its control file) to drop everything for `seconds`
    from now; 0 ends an outage. A new `seq` is what makes the shaper read it."""
    order = json.loads(control.read_text() or "{}")
    control.write_text(json.dumps({"seq": order.get("seq", 0) + 1, "outage_s": seconds}))


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


def _tbf(dev: str, direction: Direction, *, netns: str | None = None, change: bool = False
         ) -> None:
    prefix = ("ip", "netns", "exec", netns) if netns else ()
    if not direction.rate_kbps:
        return
    rate_bps = direction.rate_kbps * 1000
    burst = max(3200, rate_bps // 8 // 100)  # 10 ms of the rate, at least two packets
    _run(*prefix, "tc", "qdisc", "change" if change else "add", "dev", dev, "root", "tbf",
         "rate", f"{direction.rate_kbps}kbit", "burst", str(burst),
         "latency", f"{direction.queue_ms}ms")


def available() -> str | None:
    """Why a line cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "needs the netfilterqueue package (and Debian's libnetfilter-queue-dev)"
    return None


@dataclass
class EmulatedLine:
    """A namespace behind a shaped veth pair; `exec_prefix` runs a command inside it."""

    name: str
    profile: Profile
    host_side: str
    ns_side: str
    host_ip: str
    box_ip: str
    control: Path
    shaper: subprocess.Popen[bytes] | None = None
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    @classmethod
    @contextmanager
    def up(cls, profile: Profile, name: str | None = None, seed: int | None = None
           ) -> Iterator[EmulatedLine]:
        line = cls.create(profile, name, seed)
        try:
            yield line
        finally:
            line.down()

    @classmethod
    def create(cls, profile: Profile, name: str | None = None, seed: int | None = None
               ) -> EmulatedLine:
        why = available()
        if why:
            raise RuntimeError(f"cannot emulate a line here: {why}")
        name = name or f"tbl{os.getpid() % 10000}{random.randrange(100)}"
        tag = name[-8:]
        n = sum(map(ord, name)) % 250
        subnet = f"10.{n + 1}.{random.randrange(1, 250)}"
        control = Path(f"/tmp/{name}.line")
        line = cls(name, profile, f"h{tag}", f"n{tag}", f"{subnet}.1", f"{subnet}.2", control)
        try:
            _run("ip", "netns", "add", name)
            _run("ip", "link", "add", line.host_side, "type", "veth", "peer", "name",
                 line.ns_side)
            _run("ip", "link", "set", line.ns_side, "netns", name)
            _run("ip", "addr", "add", f"{line.host_ip}/24", "dev", line.host_side)
            _run("ip", "link", "set", line.host_side, "up")
            ns = line.exec_prefix
            _run(*ns, "ip", "addr", "add", f"{line.box_ip}/24", "dev", line.ns_side)
            _run(*ns, "ip", "link", "set", line.ns_side, "up")
            _run(*ns, "ip", "link", "set", "lo", "up")
            _tbf(line.host_side, profile.down)  # the host sends down to the box
            _tbf(line.ns_side, profile.up, netns=name)  # the box sends up
            line._start_shaper(seed)
        except BaseException:
            line.down()
            raise
        return line

    def _start_shaper(self, seed: int | None) -> None:
        ns = self.exec_prefix
        for chain, queue in (("OUTPUT", UPLINK_QUEUE), ("INPUT", DOWNLINK_QUEUE)):
            _run(*ns, "iptables", "-A", chain, "!", "-i" if chain == "INPUT" else "-o", "lo",
                 "-j", "NFQUEUE", "--queue-num", str(queue))
        self.control.write_text(json.dumps({"seq": 0}))
        for suffix in (".ready", ".stats"):
            self.control.with_suffix(suffix).unlink(missing_ok=True)
        spec = {"up": dataclasses.asdict(self.profile.up),
                "down": dataclasses.asdict(self.profile.down), "seed": seed}
        self.shaper = subprocess.Popen(
            [*ns, sys.executable, "-m", "bench.line", "shape", "--spec", json.dumps(spec),
             "--control", str(self.control)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        deadline = time.monotonic() + 10
        while not self.control.with_suffix(".ready").exists():
            if self.shaper.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the line's shaper did not start")
            time.sleep(0.02)

    def outage(self, seconds: float) -> None:
        """Nothing crosses the line, either way, for `seconds` from now."""
        order_outage(self.control, seconds)

    def set_rate(self, kbps: int) -> None:
        """Step both directions' rate (their queues stay as long in time)."""
        _tbf(self.host_side, dataclasses.replace(self.profile.down, rate_kbps=kbps),
             change=bool(self.profile.down.rate_kbps))
        _tbf(self.ns_side, dataclasses.replace(self.profile.up, rate_kbps=kbps),
             netns=self.name, change=bool(self.profile.up.rate_kbps))

    def down(self) -> None:
        """Everything taken down; the shaper's counters kept in `stats`."""
        if self.shaper is not None and self.shaper.poll() is None:
            self.shaper.send_signal(signal.SIGTERM)
            try:
                self.shaper.wait(5)
            except subprocess.TimeoutExpired:
                self.shaper.kill()
        stats = self.control.with_suffix(".stats")
        if stats.exists():
            self.stats = json.loads(stats.read_text())
        subprocess.run(["ip", "link", "del", self.host_side], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        for suffix in (".line", ".ready", ".stats"):
            self.control.with_suffix(suffix).unlink(missing_ok=True)


# ------------------------------------------------------------------ a measure of it

_ECHO_CLIENT = r"""
import socket, sys, time
host, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
for i in range(count):
    sent = time.monotonic(); s.sendto(str(i).encode(), (host, 9999))
    try:
        while int(s.recvfrom(64)[0]) != i: pass
        print((time.monotonic() - sent) * 1000, flush=True)
    except socket.timeout:
        print(-1, flush=True)
    time.sleep(0.02)
"""


@contextmanager
def answering_echoes(host_ip: str, port: int = 9999) -> Iterator[None]:
    """A UDP server on the host's end of a line that sends every datagram back."""
    import socket
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((host_ip, port))
    server.settimeout(0.2)
    done = threading.Event()

    def answer() -> None:
        while not done.is_set():
            try:
                data, peer = server.recvfrom(64)
            except TimeoutError:
                continue
            server.sendto(data, peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(2)
        server.close()


def echo(profile: Profile, count: int) -> tuple[list[float], int]:
    """UDP echoes from inside the namespace to the host: the round trips that came back
    (ms, as an application reads them: after both directions' delays) and how many did
    not. (`ping` reads the kernel's arrival stamp, taken before the downlink's delay.)"""
    with EmulatedLine.up(profile) as line, answering_echoes(line.host_ip):
        out = subprocess.run([*line.exec_prefix, sys.executable, "-c", _ECHO_CLIENT,
                              line.host_ip, str(count)], capture_output=True, text=True,
                             check=True).stdout
    rtts = [float(x) for x in out.split()]
    return [r for r in rtts if r >= 0], sum(1 for r in rtts if r < 0)


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.line", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a line and keep it until Ctrl-C")
    up.add_argument("--profile", choices=sorted(PROFILES), default="teaching-point")
    up.add_argument("--name", default="tb-line")
    shape = sub.add_parser("shape", help="(inside the namespace) the NFQUEUE shaper")
    shape.add_argument("--spec", required=True)
    shape.add_argument("--control", type=Path, required=True)
    measure = sub.add_parser("echo", help="UDP echoes across a new line: round trip, loss")
    measure.add_argument("--profile", choices=sorted(PROFILES), default="teaching-point")
    measure.add_argument("--count", type=int, default=200)
    outage = sub.add_parser("outage", help="cut a running line for some seconds")
    outage.add_argument("--name", default="tb-line")
    outage.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    if args.command == "shape":
        _run_shaper(json.loads(args.spec), args.control)
    elif args.command == "echo":
        import statistics

        back, lost = echo(PROFILES[args.profile], args.count)
        print(f"{args.profile}: round trip median {statistics.median(back):.1f} ms, "
              f"p95 {statistics.quantiles(back, n=20)[-1]:.1f} ms; "
              f"{lost} of {args.count} lost ({lost / args.count:.1%})")
    elif args.command == "outage":
        order_outage(Path(f"/tmp/{args.name}.line"), args.seconds)
    else:
        with EmulatedLine.up(PROFILES[args.profile], args.name) as line:
            print(f"line {line.name} up ({args.profile}): the box is {line.box_ip}, "
                  f"the host {line.host_ip}; run it with: ip netns exec {line.name} ...",
                  flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
