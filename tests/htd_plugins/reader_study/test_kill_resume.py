"""A real ``htd reader-study serve`` process killed with SIGKILL mid-study loses no answer, and
each reader resumes at their next image after a restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from htd_plugins.reader_study.db import DB_NAME, StudyDB


class Server:
    """``htd reader-study serve STUDY --port 0`` in a subprocess; the URL read from stdout."""

    def __init__(self, study: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "htd_core.cli", "reader-study", "serve", str(study),
             "--host", "127.0.0.1", "--port", "0", *extra],  # fmt: skip
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            # as from a terminal: a background job of a non-interactive shell (CI wrappers,
            # `cmd &`) inherits SIGINT ignored, and Ctrl+C could not reach the server
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        lines: list[str] = []
        found = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:
                lines.append(line)
                if "Ctrl+C stops the server" in line:  # the last line at start-up
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout=90):
            self.proc.kill()
            pytest.fail("server did not start within 90 s:\n" + "".join(lines))
        self.lines = lines
        line = next(x for x in lines if "serving reader study" in x)
        self.url = line.split(" at ")[1].strip().rstrip("/")
        assert self.url.startswith("http://127.0.0.1:")
        tokens = [x.split(": ")[1].strip() for x in lines if x.startswith("study token")]
        self.token = tokens[0] if tokens else None

    def call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["X-Study-Token"] = self.token
        req = urllib.request.Request(self.url + path, data, headers)
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read())

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def interrupt(self) -> int:
        """Ctrl+C: the server stops cleanly; returns its exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def saved(study: Path) -> dict[tuple[str, str], tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(study / DB_NAME, timeout=30)) as c:
        rows = c.execute("SELECT reader_id, image_id, call, quality FROM answers").fetchall()
    return {(r, i): (call, q) for r, i, call, q in rows}


def test_sigkill_mid_study_loses_nothing_and_readers_resume(make_study) -> None:
    study = make_study(10)
    server = Server(study.root)
    given: dict[tuple[str, str], tuple[str, int]] = {}
    try:
        progress = {r: server.call("/api/session", {"reader_id": r}) for r in ("ana", "ben")}
        for reader, n in (("ana", 3), ("ben", 6)):
            for i in range(n):
                img = progress[reader]["next_image"]
                call, quality = ("real", 1 + i % 5) if i % 2 else ("synthetic", 5 - i % 5)
                progress[reader] = server.call("/api/answer", {"reader_id": reader, "image_id":
                                               img, "call": call, "quality": quality})  # fmt: skip
                given[(reader, img)] = (call, quality)
        # a third reader answers as fast as possible while the server is killed mid-stream
        acked: dict[tuple[str, str], tuple[str, int]] = {}
        in_flight: list[tuple[str, str]] = []
        two_acked = threading.Event()

        def hammer(prog: dict) -> None:
            with contextlib.suppress(OSError):  # the server dies under us
                while not prog["done"]:
                    in_flight.append(("cam", prog["next_image"]))
                    body = {"reader_id": "cam", "image_id": prog["next_image"],
                            "call": "synthetic", "quality": 2}  # fmt: skip
                    prog = server.call("/api/answer", body)
                    acked[in_flight[-1]] = ("synthetic", 2)
                    if len(acked) >= 2:
                        two_acked.set()

        t = threading.Thread(
            target=hammer, args=(server.call("/api/session", {"reader_id": "cam"}),)
        )
        t.start()
        assert two_acked.wait(timeout=60)
        server.kill()
        t.join(timeout=60)
        assert server.proc.returncode == -signal.SIGKILL
        after = saved(study.root)
        cam = {k: v for k, v in after.items() if k[0] == "cam"}
        assert {k: v for k, v in after.items() if k[0] != "cam"} == given  # nothing lost
        assert acked.items() <= cam.items()  # every acknowledged answer survived the kill
        assert set(cam) - set(acked) <= {in_flight[-1]}  # at most the one in flight, if committed
        assert len(acked) < 10, "the kill came after cam finished: nothing was tested mid-stream"

        server = Server(study.root, "--require-token")  # restarted; token now printed
        assert server.token == study.token
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(server.url + "/api/progress?reader_id=ana", timeout=20)
        assert exc.value.code == 401
        for reader, n in (("ana", 3), ("ben", 6), ("cam", len(cam))):
            prog = server.call(f"/api/progress?reader_id={reader}")
            assert prog["answered"] == n
            assert prog["next_image"] == study.order(reader)[n]  # the reader's next image
            prog = server.call("/api/session", {"reader_id": reader})  # re-login resumes too
            assert prog["answered"] == n and prog["next_image"] == study.order(reader)[n]
        with pytest.raises(urllib.error.HTTPError) as exc:  # refused: already answered
            img = study.order("ana")[0]
            server.call("/api/answer", {"reader_id": "ana", "image_id": img, "call": "real",
                                        "quality": 3})  # fmt: skip
        assert exc.value.code == 409
        deadline = time.monotonic() + 60
        for reader in ("ana", "ben"):
            prog = server.call(f"/api/progress?reader_id={reader}")
            while not prog["done"] and time.monotonic() < deadline:
                img = prog["next_image"]
                prog = server.call("/api/answer", {"reader_id": reader, "image_id": img,
                                                   "call": "real", "quality": 3})  # fmt: skip
                given[(reader, img)] = ("real", 3)
            assert prog["done"] and prog["answered"] == 10
        assert server.interrupt() == 0
        deadline = time.monotonic() + 10
        while not any("server stopped" in x for x in server.lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("every answer given is saved" in x for x in server.lines), server.lines
    finally:
        server.stop()
    final = saved(study.root)
    assert {k: v for k, v in final.items() if k[0] != "cam"} == given and len(given) == 20
    assert len(StudyDB(study.root).answers()) == len(final)
