"""Finalisation: a lesson's capture dir → the files the library serves, as named steps.

Like a lecture-capture workflow (Opencast), finalisation is a list of named operations,
each idempotent and each recording its result in `final/manifest.json`, so a crash or a
restart resumes at the first step not done instead of starting over:

    fast (latency matters: the lesson is playable when these are done)
      remux       per-room files: MP4 (H.264 + Opus) / WebM (VP8 + Opus); Ogg (Opus) for
                  a room that sent no video
      chapters    chapters.json + chapters.vtt from events.jsonl
    slow (low priority: a worker process under `nice`)
      thumbnails  poster.jpg (teacher, ~10% in) and the thumbnail strip
      room_hls    HLS VOD of each H.264 room (hls/room-<id>/index.m3u8)
      room_audio  each room's Opus alone, as Ogg (room-<id>-audio.ogg)
      composite   composite.mp4, the picture-in-picture view (the only decode + encode)
      composite_hls  hls/composite/index.m3u8

The manifest is rewritten atomically after each phase with `state` "partial" (per-room
files ready) and finally "done". Each step works in `final/.work/<step>/` and moves its
files into `final/` only when complete, so a reader (or the library) never sees half a
file under its final name. `inputs` in the manifest fingerprints the capture (packet log
names and sizes, events size): if the capture grew since (a lesson that
resumed after a restart), every step runs again.

Time: everything is on the lesson clock (seconds since `clock_origin_unix`); the
composite's t=0 is lesson time 0; a per-room file's t=0 is lesson time `offset_s` (in the
manifest's `rooms` and in each room file entry).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recorder.finalise import chapters as chapters_mod
from recorder.finalise import hls_vod, remux, thumbnails
from recorder.storage.local import hash_and_stamp

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FAST_STEPS = ("remux", "chapters")
SLOW_STEPS = ("thumbnails", "room_hls", "room_audio")
COMPOSITE_STEPS = ("composite", "composite_hls")
SLOW_NICE = 10  # the worker process's niceness: live lessons first
# Below this much packet log, rooms are remuxed in this process one after another: a
# worker process costs ~0.3 s to start (Python + PyAV), more than a short lesson's remux.
PARALLEL_REMUX_MIN_BYTES = 32 * 1024 * 1024

# Called after each phase with the manifest written so far (the library registers it).
ManifestListener = Callable[[dict[str, Any]], Awaitable[None]]


# ---------------------------------------------------------------- small file helpers


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(final_dir: Path) -> dict[str, Any] | None:
    return read_json(final_dir / MANIFEST)


def capture_fingerprint(capture_dir: Path) -> dict[str, Any]:
    """What the capture holds now; a manifest made from other inputs is stale.

    lesson.json's state is not part of it: closing a crashed capture (jobs.mark_crashed)
    changes no media, so it does not make the files stale."""
    events = capture_dir / "events.jsonl"
    return {
        "logs": {p.name: p.stat().st_size for p in sorted(capture_dir.glob("*.tbl"))},
        "events_bytes": events.stat().st_size if events.exists() else 0,
    }


def is_finalised(capture_dir: Path, final_dir: Path) -> bool:
    """Done, from these very inputs (the durable truth jobs.py goes by)."""
    manifest = read_manifest(final_dir)
    return (
        manifest is not None
        and manifest.get("state") == "done"
        and manifest.get("inputs") == capture_fingerprint(capture_dir)
    )


class _Work:
    """A step's scratch dir inside final/, and the atomic move of its results."""

    def __init__(self, final_dir: Path, step: str) -> None:
        self.final_dir = final_dir
        self.dir = final_dir / ".work" / step
        if self.dir.exists():
            shutil.rmtree(self.dir)  # a previous attempt's leftovers
        self.dir.mkdir(parents=True)

    def publish(self, relative: str) -> Path:
        """Move work/<relative> (a file or a directory) to final/<relative>."""
        source = self.dir / relative
        target = self.final_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(target, old)
                os.replace(source, target)
                shutil.rmtree(old)
            else:
                os.replace(source, target)
        else:
            os.replace(source, target)
        return target

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _entry(final_dir: Path, path: Path, role: str, mime: str, *, classroom_id: int | None = None,
           duration_s: float | None = None, sha256: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """A manifest file entry. Its sha256 is computed here (the file was just written, its
    pages are warm) unless the step already has it, so the library never reads the file
    again to hash it (recorder/library/catalogue.py register_recording,
    recorder/storage/local.py)."""
    return {
        "path": path.relative_to(final_dir).as_posix(),
        "role": role,
        "classroom_id": classroom_id,
        "mime": mime,
        "duration_s": None if duration_s is None else round(duration_s, 3),
        "bytes": path.stat().st_size,
        "sha256": sha256 or hash_and_stamp(path),
        **extra,
    }


# ---------------------------------------------------------------- the lesson


def lesson_info(capture_dir: Path) -> dict[str, Any]:
    info = read_json(capture_dir / "lesson.json")
    if info is None:
        raise FileNotFoundError(f"{capture_dir}: no readable lesson.json")
    return info


def lesson_duration(capture_dir: Path, info: dict[str, Any], rooms: list[dict[str, Any]]
                    ) -> float:
    """Lesson time of the end: `ended_at_unix` if the lesson ended, else the last frame."""
    origin = float(info.get("clock_origin_unix") or 0.0)
    ended = info.get("ended_at_unix")
    last_frame = max((float(r["end_s"]) for r in rooms), default=0.0)
    if ended is not None and origin:
        return max(float(ended) - origin, 0.0) or last_frame
    return last_frame


def _rooms_by_id(info: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(r["classroom_id"]): r for r in info.get("rooms") or []
            if r.get("classroom_id") is not None}


# ---------------------------------------------------------------- steps (blocking)


def _remux_rooms(capture_dir: Path, out_dir: Path, logs: dict[int, remux.RoomLogs],
                 processes: int | None) -> list[dict[str, Any]]:
    """Every room remuxed, in parallel worker processes (one per core) when it pays.

    The remux is per-packet Python under the GIL, so threads would not help; each worker
    process (`python -m recorder.finalise.remux --worker`, not niced: this is the latency path)
    takes the next room as soon as it is free, largest rooms first, and is done when its
    files are hashed and fsynced (blocking)."""
    sizes = {cid: sum(p.stat().st_size for t in [*room.video, *([room.audio] if room.audio
                                                               else [])] for p in t.parts)
             for cid, room in logs.items()}
    order = sorted(logs, key=lambda cid: (-sizes[cid], cid))
    processes = min(len(order), processes or os.cpu_count() or 1)
    if processes <= 1 or sum(sizes.values()) < PARALLEL_REMUX_MIN_BYTES:
        with remux.FileSyncer() as syncer:
            return [remux.remux_and_hash(logs[cid], out_dir, syncer) for cid in order]

    # the workers import this very copy of the recorder package, wherever the server runs
    root = str(Path(remux.__file__).resolve().parents[2])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    jobs = list(order)
    lock = threading.Lock()
    results: list[dict[str, Any]] = []

    def feed() -> None:
        try:
            _feed()
        except Exception as exc:  # could not start or talk to a worker
            with lock:
                results.append({"classroom_id": None, "error": repr(exc)})

    def _feed() -> None:
        # one thread per worker process: hands it the next room, waits for its answer
        with subprocess.Popen(
                [sys.executable, "-m", "recorder.finalise.remux", "--worker", str(capture_dir),
                 str(out_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, env=env) as worker:
            assert worker.stdin is not None and worker.stdout is not None
            try:
                while True:
                    with lock:
                        if not jobs or any("error" in r for r in results):
                            break
                        classroom_id = jobs.pop(0)
                    worker.stdin.write(f"{classroom_id}\n")
                    worker.stdin.flush()
                    line = worker.stdout.readline()
                    result = json.loads(line) if line else {
                        "classroom_id": classroom_id,
                        "error": f"remux worker exited ({worker.poll()})"}
                    with lock:
                        results.append(result)
            finally:
                worker.stdin.close()  # the worker finishes its fsyncs and exits
            if worker.wait() != 0:
                raise RuntimeError(f"remux worker exited with {worker.returncode}")

    threads = [threading.Thread(target=feed, name=f"remux-{i}") for i in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != len(order) and not any("error" in r for r in results):
        results.append({"classroom_id": None, "error": "remux workers left rooms undone"})
    return results


def step_remux(capture_dir: Path, final_dir: Path, info: dict[str, Any], *,
               processes: int | None = None) -> dict[str, Any]:
    """Per-room files; returns {"rooms": [...], "files": [...]} for the manifest.

    Rooms are remuxed in parallel processes (`processes`, default one per core), and
    each file's sha256 is computed by the process that wrote it."""
    work = _Work(final_dir, "remux")
    roster = _rooms_by_id(info)
    rooms: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    try:
        logs = remux.find_room_logs(capture_dir)
        results = _remux_rooms(capture_dir, work.dir, logs, processes)
        failed = [r for r in results if "error" in r]
        if failed:
            raise RuntimeError(f"remux failed: {failed}")
        for result in sorted(results, key=lambda r: r["classroom_id"]):
            classroom_id = int(result["classroom_id"])
            if "skipped" in result:
                logger.warning("lesson %s: %s", info.get("lesson_id"), result["skipped"])
                continue
            room = roster.get(classroom_id, {})
            rooms.append({
                "classroom_id": classroom_id,
                "role": room.get("role", "receiving"),
                "name": room.get("name", f"classroom {classroom_id}"),
                "position": room.get("position", 0),
                "offset_s": round(result["offset_s"], 6),
                "duration_s": round(result["duration_s"], 3),
                "end_s": round(result["end_s"], 6),
                "video_codec": result["video_codec"],
                "width": result["width"],
                "height": result["height"],
                "video_frames": result["video_frames"],
                "audio_packets": result["audio_packets"],
                "parts": result["parts"],
                "gaps": [{"kind": g["kind"], "from_s": round(g["from_s"], 3),
                          "to_s": round(g["to_s"], 3)} for g in result["gaps"]],
                "files": [f["name"] for f in result["files"]],
                "remux_s": round(result["seconds"], 3),
            })
            for file in result["files"]:
                target = work.publish(file["name"])
                files.append(_entry(final_dir, target, file["role"], file["mime"],
                                    classroom_id=classroom_id,
                                    duration_s=result["duration_s"],
                                    offset_s=round(result["offset_s"], 6),
                                    sha256=file["sha256"]))
    finally:
        work.close()
    return {"rooms": rooms, "files": files}


def step_room_audio(capture_dir: Path, final_dir: Path, manifest: dict[str, Any]
                    ) -> dict[str, Any]:
    """The Ogg audio of each room that has a video file (the others got it in remux)."""
    work = _Work(final_dir, "room_audio")
    files: list[dict[str, Any]] = []
    try:
        logs = remux.find_room_logs(capture_dir)
        for room in manifest.get("rooms", []):
            room_logs = logs.get(int(room["classroom_id"]))
            if room_logs is None or room_logs.audio is None or any(
                    n.endswith(".ogg") for n in room["files"]):
                continue
            result = remux.remux_room(room_logs, work.dir, video_files=False,
                                      audio_file=True)
            for file in result.files:
                target = work.publish(file.path.name)
                files.append(_entry(final_dir, target, file.role, file.mime,
                                    classroom_id=room["classroom_id"],
                                    duration_s=result.duration_s,
                                    offset_s=round(result.offset_s, 6)))
    finally:
        work.close()
    return {"files": files}


def step_chapters(capture_dir: Path, final_dir: Path, info: dict[str, Any],
                  duration_s: float) -> dict[str, Any]:
    work = _Work(final_dir, "chapters")
    try:
        events = chapters_mod.read_events(capture_dir / "events.jsonl")
        chapters = chapters_mod.chapters_from_events(events, _rooms_by_id(info), duration_s)
        chapters_mod.write_chapters(chapters, duration_s, work.dir)
        files = [
            _entry(final_dir, work.publish("chapters.json"), "chapters", "application/json",
                   duration_s=duration_s),
            _entry(final_dir, work.publish("chapters.vtt"), "chapters", "text/vtt",
                   duration_s=duration_s),
        ]
    finally:
        work.close()
    return {"files": files, "chapters": len(chapters)}


def _main_room_file(manifest: dict[str, Any], final_dir: Path) -> tuple[Path, float] | None:
    """The teacher's video file and its offset (else any room's video)."""
    rooms = sorted(manifest.get("rooms", []), key=lambda r: (r.get("role") != "main",
                                                             r["classroom_id"]))
    for room in rooms:
        for name in room.get("files", []):
            if name.endswith((".mp4", ".webm")):
                return final_dir / name, float(room["offset_s"])
    return None


def step_thumbnails(final_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    source = _main_room_file(manifest, final_dir)
    if source is None:
        return {"files": []}
    video, offset = source
    work = _Work(final_dir, "thumbnails")
    files: list[dict[str, Any]] = []
    try:
        if thumbnails.make_poster(video, work.dir / "poster.jpg") is not None:
            files.append(_entry(final_dir, work.publish("poster.jpg"), "poster", "image/jpeg"))
        strip = thumbnails.make_strip(video, work.dir)
        if strip is not None:
            # the index on the lesson clock, like the chapters
            index = json.loads(strip.index_json.read_text())
            index["offset_s"] = offset
            strip.index_json.write_text(json.dumps(index, indent=1))
            for name, mime in (("thumbnails.jpg", "image/jpeg"),
                               ("thumbnails.json", "application/json"),
                               ("thumbnails.vtt", "text/vtt")):
                files.append(_entry(final_dir, work.publish(name), "thumbnail_strip", mime,
                                    offset_s=offset))
    finally:
        work.close()
    return {"files": files}


def _hls_files(final_dir: Path, result: hls_vod.HlsResult, classroom_id: int | None,
               offset_s: float) -> list[dict[str, Any]]:
    files = [_entry(final_dir, result.playlist, "hls_playlist", "application/vnd.apple.mpegurl",
                    classroom_id=classroom_id, duration_s=result.duration_s,
                    offset_s=offset_s)]
    files.append(_entry(final_dir, result.init, "hls_segment", "video/mp4",
                        classroom_id=classroom_id))
    files += [_entry(final_dir, s, "hls_segment", "video/iso.segment",
                     classroom_id=classroom_id) for s in result.segments]
    return files


def step_room_hls(final_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    work = _Work(final_dir, "room_hls")
    files: list[dict[str, Any]] = []
    try:
        for room in manifest.get("rooms", []):
            for name in room.get("files", []):
                if not name.endswith(".mp4") or not hls_vod.can_package(final_dir / name):
                    continue
                relative = f"hls/{Path(name).stem}"
                hls_vod.make_hls(final_dir / name, work.dir / relative)
                target = work.publish(relative)
                result = _hls_result(target)
                files += _hls_files(final_dir, result, room["classroom_id"],
                                    float(room["offset_s"]))
    finally:
        work.close()
    return {"files": files}


def _hls_result(directory: Path) -> hls_vod.HlsResult:
    playlist = directory / hls_vod.PLAYLIST
    duration = sum(d for d, _uri in hls_vod.parse_playlist(playlist))
    return hls_vod.HlsResult(playlist, directory / hls_vod.INIT,
                             sorted(directory.glob("seg-*.m4s")), duration)


def step_composite(capture_dir: Path, final_dir: Path, manifest: dict[str, Any]
                   ) -> dict[str, Any]:
    from recorder.finalise.composite import render_composite
    from recorder.finalise.layout import RoomMedia, TimelineEvent

    media = []
    for room in manifest.get("rooms", []):
        video = next((final_dir / n for n in room["files"] if n.endswith((".mp4", ".webm"))),
                     None)
        audio = video if video is not None else next(
            (final_dir / n for n in room["files"] if n.endswith(".ogg")), None)
        if video is not None and not room.get("video_codec"):
            video = None
        media.append(RoomMedia(
            classroom_id=int(room["classroom_id"]),
            role="main" if room.get("role") == "main" else "receiving",
            name=str(room.get("name", "")),
            position=int(room.get("position") or 0),
            video=video,
            audio=audio,
            offset_s=float(room["offset_s"]),
        ))
    if not media:
        return {"files": []}
    events = [TimelineEvent(e.t_s, e.kind, e.classroom_id)
              for e in chapters_mod.read_events(capture_dir / "events.jsonl")]
    duration = float(manifest["duration_s"])
    work = _Work(final_dir, "composite")
    try:
        stats = render_composite(media, events, duration, work.dir / "composite.mp4")
        target = work.publish("composite.mp4")
        files = [_entry(final_dir, target, "composite", 'video/mp4; codecs="avc1.64001F, '
                        'mp4a.40.2"', duration_s=duration, offset_s=0.0)]
    finally:
        work.close()
    return {"files": files, "stats": {"wall_s": round(stats.wall_s, 2),
                                      "cpu_s": round(stats.cpu_s, 2),
                                      "realtime_factor": round(stats.realtime_factor, 2)}}


def step_composite_hls(final_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    source = final_dir / "composite.mp4"
    if not source.exists():
        return {"files": []}
    work = _Work(final_dir, "composite_hls")
    try:
        hls_vod.make_hls(source, work.dir / "hls" / "composite")
        target = work.publish("hls/composite")
        files = _hls_files(final_dir, _hls_result(target), None, 0.0)
    finally:
        work.close()
    return {"files": files}


# ---------------------------------------------------------------- the workflow


def _new_manifest(capture_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    origin = float(info.get("clock_origin_unix") or 0.0)
    return {
        "version": MANIFEST_VERSION,
        "lesson_id": info.get("lesson_id"),
        "title": info.get("title"),
        "state": "pending",
        "started_at": datetime.fromtimestamp(origin, UTC).isoformat() if origin else None,
        "clock_origin_unix": origin,
        "end_reason": info.get("end_reason"),
        "duration_s": None,
        "inputs": capture_fingerprint(capture_dir),
        "rooms": [],
        "files": [],
        "steps": {},
    }


def _record(manifest: dict[str, Any], step: str, result: dict[str, Any], seconds: float) -> None:
    """Put a step's files in the manifest (replacing that step's earlier ones)."""
    manifest["files"] = [f for f in manifest["files"] if f.get("step") != step]
    for file in result.get("files", []):
        file["step"] = step
        manifest["files"].append(file)
    summary = {k: v for k, v in result.items() if k not in ("files", "rooms")}
    manifest["steps"][step] = {"state": "done", "seconds": round(seconds, 3), **summary,
                               "at": time.time()}


def _done(manifest: dict[str, Any], final_dir: Path, step: str) -> bool:
    if manifest["steps"].get(step, {}).get("state") != "done":
        return False
    return all((final_dir / f["path"]).exists() for f in manifest["files"]
               if f.get("step") == step)


def _run_steps(capture_dir: Path, final_dir: Path, manifest: dict[str, Any],
               steps: tuple[str, ...], *, remux_processes: int | None = None
               ) -> dict[str, Any]:
    """Run the named steps not yet done, in order (blocking); returns the manifest."""
    info = lesson_info(capture_dir)
    for step in steps:
        if _done(manifest, final_dir, step):
            continue
        started = time.perf_counter()
        if step == "remux":
            result = step_remux(capture_dir, final_dir, info, processes=remux_processes)
            manifest["rooms"] = result["rooms"]
            manifest["duration_s"] = round(lesson_duration(capture_dir, info,
                                                           result["rooms"]), 3)
        elif step == "chapters":
            result = step_chapters(capture_dir, final_dir, info, manifest["duration_s"] or 0.0)
        elif step == "thumbnails":
            result = step_thumbnails(final_dir, manifest)
        elif step == "room_hls":
            result = step_room_hls(final_dir, manifest)
        elif step == "room_audio":
            result = step_room_audio(capture_dir, final_dir, manifest)
        elif step == "composite":
            result = step_composite(capture_dir, final_dir, manifest)
        elif step == "composite_hls":
            result = step_composite_hls(final_dir, manifest)
        else:
            raise ValueError(f"unknown finalisation step {step!r}")
        _record(manifest, step, result, time.perf_counter() - started)
        logger.info("lesson %s: %s done in %.2f s", manifest.get("lesson_id"), step,
                    time.perf_counter() - started)
    return manifest


async def _run_steps_niced(capture_dir: Path, final_dir: Path, manifest: dict[str, Any],
                          steps: tuple[str, ...]) -> dict[str, Any]:
    """`_run_steps` in a child process under `nice` (`python -m recorder.finalise.steps`).

    A child process rather than a pool: it is niced on its own (os.nice would lower the
    whole server), holds no GIL the server needs, and works the same however the server
    was started (multiprocessing's spawn re-imports the caller's main module). The
    manifest goes in on stdin and comes back on stdout.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder.finalise.steps", str(capture_dir), str(final_dir),
        *steps, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await process.communicate(json.dumps(manifest).encode())
    except asyncio.CancelledError:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"finalisation steps {steps} failed (exit {process.returncode})")
    return json.loads(out)


def _child_main(argv: list[str]) -> int:
    try:
        os.nice(SLOW_NICE)
    except OSError:
        pass
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s finalise[%(process)d] %(message)s")
    capture_dir, final_dir, *steps = argv
    manifest = json.loads(sys.stdin.read())
    manifest = _run_steps(Path(capture_dir), Path(final_dir), manifest, tuple(steps))
    sys.stdout.write(json.dumps(manifest))
    return 0


async def finalise_lesson(capture_dir: Path, final_dir: Path, *, composite: bool = True,
                          on_manifest: ManifestListener | None = None,
                          slow_in_process: bool = True) -> dict[str, Any]:
    """Finalise one lesson; returns the final manifest (also in final_dir/manifest.json).

    Per-room files and chapters first, in a thread (the lesson is playable when they are
    done: manifest state "partial"), then thumbnails, room HLS and, if `composite`, the
    composite and its HLS in a niced worker process (state "done"). `on_manifest` is
    awaited after each phase with the manifest so far. Safe to run again: steps already
    done from the same inputs are skipped; a changed capture starts over.
    """
    capture_dir, final_dir = Path(capture_dir), Path(final_dir)
    final_dir.mkdir(parents=True, exist_ok=True)
    info = await asyncio.to_thread(lesson_info, capture_dir)
    manifest = read_manifest(final_dir)
    fingerprint = await asyncio.to_thread(capture_fingerprint, capture_dir)
    if (manifest is None or manifest.get("version") != MANIFEST_VERSION
            or manifest.get("inputs") != fingerprint):
        manifest = _new_manifest(capture_dir, info)
    elif manifest.get("state") == "done" and all(
            _done(manifest, final_dir, step) for step in manifest["steps"]):
        return manifest
    manifest["end_reason"] = info.get("end_reason")
    started = time.perf_counter()

    manifest = await asyncio.to_thread(_run_steps, capture_dir, final_dir, manifest,
                                       FAST_STEPS)
    manifest["state"] = "partial"
    manifest["playable_after_s"] = round(time.perf_counter() - started, 3)
    await asyncio.to_thread(write_json_atomic, final_dir / MANIFEST, manifest)
    if on_manifest is not None:
        await on_manifest(manifest)

    phases = [SLOW_STEPS] + ([COMPOSITE_STEPS] if composite else [])
    for steps in phases:
        if slow_in_process:
            manifest = await _run_steps_niced(capture_dir, final_dir, manifest, steps)
        else:
            manifest = await asyncio.to_thread(_run_steps, capture_dir, final_dir, manifest,
                                               steps)
        if steps is phases[-1]:
            manifest["state"] = "done"
            manifest["finalised_after_s"] = round(time.perf_counter() - started, 3)
        await asyncio.to_thread(write_json_atomic, final_dir / MANIFEST, manifest)
        if on_manifest is not None:
            await on_manifest(manifest)
    shutil.rmtree(final_dir / ".work", ignore_errors=True)
    return manifest


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
