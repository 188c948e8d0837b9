"""The reading server's API: bad ids, traversal, unknown readers, duplicate answers (refused),
the token, the key never leaving the database, and several readers at once."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import urllib.request
from pathlib import Path

import pytest

from htd_core.errors import InputError
from htd_plugins.reader_study.db import StudyDB
from htd_plugins.reader_study.server import create_app, is_loopback, make_server


@pytest.fixture
def client(make_study):
    study = make_study(10)
    app = create_app(study)
    return app.test_client(), study


def answer(c, reader: str, image: str, call: str = "real", quality=3, **extra):
    body = {"reader_id": reader, "image_id": image, "call": call, "quality": quality, **extra}
    return c.post("/api/answer", json=body)


def test_session_progress_and_answers(client) -> None:
    c, study = client
    r = c.post("/api/session", json={"reader_id": "alice"})
    assert r.status_code == 200
    first = r.get_json()
    assert first == {"reader_id": "alice", "answered": 0, "total": 10,
                     "next_image": first["next_image"], "done": False}  # fmt: skip
    assert first["next_image"] == study.order("alice")[0]
    r = answer(c, "alice", first["next_image"], "synthetic", 4, comment="odd nuclei")
    assert r.status_code == 200 and r.get_json()["answered"] == 1
    assert r.get_json()["next_image"] == study.order("alice")[1]
    rows = study.answers()
    assert len(rows) == 1 and rows[0]["comment"] == "odd nuclei" and rows[0]["quality"] == 4
    # each reader gets their own seeded order, stable across calls
    c.post("/api/session", json={"reader_id": "bob"})
    assert study.order("bob") != study.order("alice")
    assert study.order("bob") == study.order("bob")
    assert sorted(study.order("bob")) == sorted(study.image_ids())
    img = c.get(f"/image/{first['next_image']}")
    assert img.status_code == 200 and img.mimetype == "image/png"
    assert img.data == study.image_path(first["next_image"]).read_bytes()


def test_bad_ids_and_traversal_are_refused(client) -> None:
    c, study = client
    c.post("/api/session", json={"reader_id": "alice"})
    db_bytes = study.path.read_bytes()[:16]
    for path in ["/image/0123456789abcdef", "/image/..%2Fstudy.sqlite", "/image/../study.sqlite",
                 "/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/image/..", "/image/study.sqlite",
                 f"/image/{study.image_ids()[0]}.png", "/images/../study.sqlite",
                 "/study.sqlite", "/image/" + study.image_ids()[0].upper()]:  # fmt: skip
        r = c.get(path)
        assert r.status_code == 404, path
        assert db_bytes not in r.data and r.mimetype == "application/json", path
    with pytest.raises(InputError):
        study.image_path("../study")
    r = answer(c, "alice", "0123456789abcdef")
    assert r.status_code == 404 and "not in this study" in r.get_json()["error"]
    r = answer(c, "alice", "../../study.sqlite")
    assert r.status_code == 404
    assert study.answers() == []


def test_unknown_reader_and_bad_values(client) -> None:
    c, study = client
    img = study.image_ids()[0]
    r = answer(c, "mallory", img)
    assert r.status_code == 404 and "no session" in r.get_json()["error"]
    assert c.get("/api/progress?reader_id=mallory").status_code == 404
    assert c.post("/api/session", json={"reader_id": "../x"}).status_code == 400
    assert c.post("/api/session", json={"reader_id": ""}).status_code == 400
    assert c.post("/api/session", data="not json").status_code == 400
    c.post("/api/session", json={"reader_id": "alice"})
    for call, quality in [("maybe", 3), ("real", 0), ("real", 6), ("real", "3"), ("real", True),
                          ("real", 2.5), (None, 3)]:  # fmt: skip
        assert answer(c, "alice", img, call, quality).status_code == 400, (call, quality)
    assert answer(c, "alice", img, comment="x" * 2001).status_code == 400
    assert study.answers() == []


def test_second_answer_to_same_image_is_refused(client) -> None:
    c, study = client
    c.post("/api/session", json={"reader_id": "alice"})
    img = study.order("alice")[0]
    assert answer(c, "alice", img, "real", 5).status_code == 200
    r = answer(c, "alice", img, "synthetic", 1)
    assert r.status_code == 409 and "first answer stands" in r.get_json()["error"]
    rows = study.answers()
    assert [(a["call"], a["quality"]) for a in rows] == [("real", 5)]
    assert c.get("/api/progress?reader_id=alice").get_json()["answered"] == 1


def test_key_and_sources_never_sent(client) -> None:
    c, study = client
    sent = [c.get(p).data for p in ("/", "/app.js", "/app.css", "/api/info")]
    prog = c.post("/api/session", json={"reader_id": "alice"}).get_json()
    while not prog["done"]:
        sent.append(json.dumps(prog).encode())
        sent.append(c.get(f"/image/{prog['next_image']}").data)
        prog = answer(c, "alice", prog["next_image"], "real", 3).get_json()
    sent.append(json.dumps(prog).encode())
    blob = b"\n".join(sent)
    for secret in [b"zebra_model", b"SECRET", b"truth", b"set_name", b"source", study.token.encode(),
                   str(study.root).encode()]:  # fmt: skip
        assert secret not in blob, secret
    for msg in sent[4:]:
        if msg.startswith(b"{"):
            assert set(json.loads(msg)) == {"reader_id", "answered", "total", "next_image", "done"}


def test_token_required_off_loopback(make_study) -> None:
    study = make_study(4)
    c = create_app(study, require_token=True).test_client()
    img = study.image_ids()[0]
    assert c.get("/api/info").get_json()["token_required"] is True
    assert c.get("/").status_code == 200
    assert c.get(f"/image/{img}").status_code == 401
    assert c.get("/api/progress?reader_id=a").status_code == 401
    assert c.post("/api/session", json={"reader_id": "a", "token": "wrong"}).status_code == 401
    assert answer(c, "a", img).status_code == 401
    r = c.post("/api/session", json={"reader_id": "a", "token": study.token})
    assert r.status_code == 200 and "htd_study_token" in r.headers.get("Set-Cookie", "")
    assert c.get(f"/image/{img}").status_code == 200  # cookie now set
    fresh = create_app(study, require_token=True).test_client()
    assert fresh.get(f"/image/{img}", headers={"X-Study-Token": study.token}).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert not is_loopback("lab-machine.local")


def test_busy_port_is_an_input_error(make_study) -> None:
    study = make_study(4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(InputError, match="choose another --port"):
            make_server(study.root, "127.0.0.1", s.getsockname()[1])


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def test_several_readers_at_once(make_study, live_server) -> None:
    study: StudyDB = make_study(10)
    base = live_server(study.root)
    errors: list[BaseException] = []

    def read(reader: str) -> None:
        try:
            prog = post(f"{base}/api/session", {"reader_id": reader})
            for _ in range(20):  # bounded: 10 images
                if prog["done"]:
                    break
                prog = post(f"{base}/api/answer", {"reader_id": reader, "image_id":
                            prog["next_image"], "call": "synthetic", "quality": 2})  # fmt: skip
            assert prog["done"] and prog["answered"] == 10
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(f"reader-{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with contextlib.closing(sqlite3.connect(f"file:{Path(study.path)}?mode=ro", uri=True)) as c:
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT reader_id) FROM answers").fetchone() == (
            50,
            5,
        )
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def visible_text(html: str) -> str:
    """The text a browser without JavaScript shows: no script, no ``hidden`` element."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[bool] = []  # per open element: hidden?
            self.parts: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag in ("meta", "link", "input", "br", "img"):
                return
            hidden = tag in ("script", "style", "title") or "hidden" in dict(attrs)
            self.stack.append(hidden or (bool(self.stack) and self.stack[-1]))

        def handle_endtag(self, tag) -> None:
            if self.stack and tag not in ("meta", "link", "input", "br", "img"):
                self.stack.pop()

        def handle_data(self, data) -> None:
            if not (self.stack and self.stack[-1]):
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_start_page_is_server_rendered(make_study) -> None:
    """A plain fetch (no JavaScript) shows the start page, the study size and the noscript
    line, and the token field only when the token is required."""
    study = make_study(10)
    for required in (False, True):
        html = create_app(study, required).test_client().get("/").get_data(as_text=True)
        text = visible_text(html)
        assert "Blinded reader study" in text and "This study holds 10 images." in text
        assert "Reader id" in text and "Start or resume" in text
        assert ("Study token" in text) is required
        assert "<noscript>" in html and "needs JavaScript" in text
        assert "Save & next" not in text  # the reading screen stays hidden until the script


def test_http_errors_are_json(client) -> None:
    c, _ = client
    r = c.get("/api/answer")
    assert r.status_code == 405 and r.mimetype == "application/json" and r.get_json()["error"]
    r = c.post("/api/session", data="x" * (65 * 1024), content_type="application/json")
    assert r.status_code == 413 and r.mimetype == "application/json"
    assert c.get("/nowhere").get_json() == {"error": "not found"}
