"""Helpers for tests that drive Debian's Chromium (not a test module, no fixtures).

- `launch_chromium(playwright, **kw)`: headless Chromium at /usr/bin/chromium with the
  flags we agreed on (fake camera and microphone, no network side traffic).
- `chromium_available()`: for `skipif`.
- `free_port()`: a TCP port nobody listens on right now.
- `DemoRun.start(data_dir)`: `tongbu demo` as a subprocess, as a user would start it, with
  its WATCH_URL; `.stop()` ends it (SIGINT, as Ctrl-C would).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
TONGBU = REPO / ".venv" / "bin" / "tongbu"


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


async def launch_chromium(playwright: Any, **kw: Any) -> Any:
    """A Playwright Browser on Debian's Chromium; `args` in kw are added to ours."""
    extra = list(kw.pop("args", ()))
    return await playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,  # together with --headless=new: Playwright adds no old-headless flag
        args=[*CHROMIUM_FLAGS, *extra],
        **kw,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def tongbu_command() -> list[str] | None:
    """How to run `tongbu`, or None when this checkout has no demo command yet."""
    if TONGBU.exists():
        return [str(TONGBU)]
    found = shutil.which("tongbu")
    return [found] if found else None


_WATCH_URL = re.compile(r"^WATCH_URL=(\S+)\s*$", re.MULTILINE)


@dataclass
class DemoRun:
    """`tongbu demo` running in its own process group, its output in a log file."""

    process: subprocess.Popen[bytes]
    watch_url: str
    log: Path
    port: int

    @classmethod
    def start(
        cls, data_dir: Path, *, timeout: float = 60.0, extra: tuple[str, ...] = ()
    ) -> DemoRun:
        command = tongbu_command()
        if command is None:
            raise RuntimeError("no `tongbu` command in .venv/bin")
        port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "demo.out"
        # Output to a file, not a pipe: nobody reads a pipe after WATCH_URL, and a full
        # pipe would stall the server.
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *command,
                    "demo",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                    "--no-open",
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,  # its agents too can be stopped as one group
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if match := _WATCH_URL.search(text):
                return cls(process, match.group(1), log, port)
            if process.poll() is not None:
                raise RuntimeError(f"tongbu demo exited ({process.returncode}):\n{text[-4000:]}")
            time.sleep(0.2)
        run = cls(process, "", log, port)
        run.stop()
        raise TimeoutError(f"no WATCH_URL within {timeout} s:\n{run.output()[-4000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ctrl-C, as a user would: the first ends the lesson and finalises its recording,
        after which the demo keeps serving the replay (REPLAY_URL) until a second Ctrl-C.
        The group (demo and its agents) is killed if it lingers."""
        if self.process.poll() is not None:
            return self.process.returncode
        deadline = time.monotonic() + timeout
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            while self.process.poll() is None and time.monotonic() < deadline:
                if "REPLAY_URL=" in self.output():
                    os.killpg(self.process.pid, signal.SIGINT)
                    break
                time.sleep(0.1)
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        return self.process.returncode
