"""Process plumbing shared by the server benchmarks: start, measure, stop.

CPU is read from /proc/<pid>/stat (utime + stime, all threads of that one process), so a
figure is the server's own cost, whatever the publishers and subscribers on the same box
spend.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TONGBU = str(Path(sys.executable).with_name("tongbu"))
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process in seconds (all its threads, not its children)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return f.read().split()[0]


# Load generators (publishers, light rooms) run at a lower priority than the server under
# test, so that on a shared box the server gets the CPU it asks for.
NICE = ["nice", "-n", "10"]


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, nproc {os.cpu_count()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


@dataclass
class Child:
    """A subprocess whose first stdout line is a JSON object (port, token, ...)."""

    process: subprocess.Popen[bytes]
    info: dict[str, object]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(args: list[str], log: Path, *, pipe: bool,
          stdin: bool = False) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            args, stdout=subprocess.PIPE if pipe else subprocess.DEVNULL, stderr=stderr,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _first_line(process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child exited: {log.read_text()[-2000:]}")
    return json.loads(line)


async def start_child(args: list[str], log: Path, *, wait_line: bool = True,
                      stdin: bool = False) -> Child:
    """Start `args`; with `wait_line`, wait (60 s at most) for its JSON line."""
    process = spawn(args, log, pipe=wait_line, stdin=stdin)
    info: dict[str, object] = {}
    if wait_line:
        loop = asyncio.get_running_loop()
        info = await asyncio.wait_for(
            loop.run_in_executor(None, _first_line, process, log), 60)
    return Child(process, info)


class CpuWindow:
    """CPU of one process over a wall-clock window, in % of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.u0, self.s0 = cpu_times(pid)
        self.t0 = time.monotonic()
        self.user = self.system = 0.0

    def percent(self) -> float:
        """Total %, keeping the user/system split in `user` and `system`."""
        u1, s1 = cpu_times(self.pid)
        wall = time.monotonic() - self.t0
        self.user = 100 * (u1 - self.u0) / wall
        self.system = 100 * (s1 - self.s0) / wall
        return self.user + self.system
