"""The emulated rural line (bench/line.py) does to packets what its profile says.

The shaper's decisions on their own (seeded, no kernel): random loss at its rate, losses
in bursts on `bad-day`, delays within ± jitter that never reorder, an outage dropping all.
Then a real line (root, a network namespace, tbf and NFQUEUE): UDP echoes from the box
to the host come back no sooner than both one-way delays, some are lost, none cross an
outage, and no more than the rate gets through. Only lower bounds on time and upper
bounds on throughput: a busy machine can make a line slower, never faster.
"""

from __future__ import annotations

import itertools
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.line import (
    PROFILES,
    Direction,
    EmulatedLine,
    Profile,
    Shaper,
    answering_echoes,
    available,
)

ECHO = r"""
import socket, sys, time
host, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.4)
for i in range(count):
    sent = time.monotonic(); s.sendto(str(i).encode(), (host, 9999))
    try:
        while int(s.recvfrom(64)[0]) != i: pass
        print(i, (time.monotonic() - sent) * 1000, sent, flush=True)
    except socket.timeout:
        print(i, -1, sent, flush=True)
    time.sleep(gap)
"""


def decisions(direction: Direction, count: int, seed: int = 7) -> list[float | None]:
    shaper = Shaper(direction, random.Random(seed))
    return [shaper.release_at(i * 0.001) for i in range(count)]


def test_random_loss_is_at_its_rate() -> None:
    out = decisions(PROFILES["teaching-point"].up, 20_000)
    lost = sum(1 for r in out if r is None) / len(out)
    assert 0.025 < lost < 0.035  # 3 %: 600 ± 24 (1 sd) of 20,000


def test_bad_day_loses_eight_percent_in_bursts() -> None:
    out = decisions(PROFILES["bad-day"].up, 50_000)
    lost = [r is None for r in out]
    assert 0.07 < sum(lost) / len(lost) < 0.09
    bursts = [len(list(run)) for gone, run in itertools.groupby(lost) if gone]
    assert sum(bursts) / len(bursts) > 3  # ~4 in a row; random 8 % would give ~1.1


def test_delays_stay_within_the_jitter_and_never_reorder() -> None:
    direction = Direction(delay_ms=50, jitter_ms=10)
    shaper = Shaper(direction, random.Random(3))
    sent = [i * 0.0005 for i in range(4000)]  # 2,000 packets/s: closer than the jitter
    # A fake clock: the sending times are numbers given to the shaper, none is measured.
    released = [shaper.release_at(t) for t in sent]
    assert all(r is not None for r in released)
    assert released == sorted(released)
    held = [r - t for r, t in zip(released, sent, strict=True) if r is not None]  # fake s
    assert min(held) >= 0.040 - 1e-9
    assert max(held) <= 0.060 + 0.0005 * 40  # the cap may push a packet past a late one
    assert len({round(h, 4) for h in held}) > 100  # jittered, not one constant


def test_an_outage_drops_everything_until_it_ends() -> None:
    shaper = Shaper(Direction(delay_ms=10), random.Random(1))
    shaper.outage_until = 5.0
    assert [shaper.release_at(t) for t in (0.0, 2.5, 4.999)] == [None, None, None]
    assert shaper.release_at(5.0) == pytest.approx(5.01)
    assert (shaper.passed, shaper.dropped) == (1, 3)


# ------------------------------------------------------------------ a real line

needs_line = pytest.mark.skipif(available() is not None, reason=f"{available()}")


@pytest.fixture
def echo_host() -> Iterator[EmulatedLine]:
    with EmulatedLine.up(PROFILES["teaching-point"], seed=11) as line, answering_echoes(
        line.host_ip
    ):
        yield line


def echoes(line: EmulatedLine, count: int, gap: float) -> subprocess.Popen[str]:
    return subprocess.Popen([*line.exec_prefix, sys.executable, "-c", ECHO, line.host_ip,
                             str(count), str(gap)], stdout=subprocess.PIPE, text=True)


def rtts(process: subprocess.Popen[str]) -> list[tuple[float, float]]:
    """(round trip in ms or -1 if none came back, when it was sent: time.monotonic(), one
    clock for every process of the machine) per echo."""
    out, _ = process.communicate(timeout=120)
    return [(float(f[1]), float(f[2])) for f in (line.split() for line in out.splitlines())]


@pytest.mark.netns
@needs_line
def test_a_teaching_point_line_delays_both_ways_and_loses_some(
    echo_host: EmulatedLine,
) -> None:
    line = echo_host
    answers = rtts(echoes(line, 150, 0.01))
    back = [r for r, _sent in answers if r >= 0]
    assert len(answers) == 150
    assert 0 < 150 - len(back) < 40  # 3 % each way: ~9 of 150 lost
    assert min(back) >= 2 * (50 - 10)  # never sooner than both one-way delays allow
    line.down()
    assert line.stats["up"]["dropped"] > 0 and line.stats["down"]["dropped"] > 0


@pytest.mark.netns
@needs_line
def test_nothing_crosses_an_outage_and_the_line_comes_back(
    echo_host: EmulatedLine,
) -> None:
    line = echo_host
    line.outage(3.0)
    cut = time.monotonic()
    answers = rtts(echoes(line, 30, 0.1))  # 30 × (0.1 s + up to 0.4 s): outlives the cut
    during = [r for r, sent in answers if 0.1 < sent - cut < 2.8]  # (read within 50 ms)
    after = [r for r, sent in answers if sent - cut > 3.2]
    assert during and all(r < 0 for r in during)  # nothing sent in the cut came back
    assert after and any(r >= 0 for r in after)  # and the line carries again after it


@pytest.mark.netns
@needs_line
def test_no_more_than_the_rate_gets_through() -> None:
    rate_only = Direction(rate_kbps=1000, queue_ms=300)  # bad-day's rate, nothing else
    with EmulatedLine.up(Profile("rate-only", rate_only, rate_only)) as line:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((line.host_ip, 9998))
        sink.settimeout(0.5)
        blast = (
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "end = time.monotonic() + 2\n"
            "while time.monotonic() < end:\n"
            f"    s.sendto(b'x' * 1200, ('{line.host_ip}', 9998)); time.sleep(0.0005)\n"
        )  # ~19 Mbit/s offered
        sender = subprocess.Popen([*line.exec_prefix, sys.executable, "-c", blast])
        received, first = 0, None
        try:
            while True:
                data = sink.recv(2000)
                first = first or time.monotonic()
                received += len(data)
        except TimeoutError:
            pass
        sender.wait(10)
        sink.close()
    assert first is not None
    # 2 s at 1 Mbit/s is 250 kB, plus what the queue held when the sender stopped (300 ms)
    # and the bucket's burst; a loaded box only delivers less.
    assert received <= (2.0 + 0.3) * 1_000_000 / 8 + 20_000
    assert received > 50_000  # and the line did carry
