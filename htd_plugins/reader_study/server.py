"""The reading web app (Flask, plain HTML/JS): one image at a time, answers saved before the next.

Routes (JSON unless noted)::

    GET  /                   the start page (HTML, server-rendered: readable without
                             JavaScript; only the image count and whether a token is needed)
    GET  /app.js, /app.css   its script and style
    GET  /api/info           {"token_required", "total"}
    POST /api/session        {"reader_id", "token"?} -> progress; registers a new reader
    GET  /api/progress       ?reader_id=... -> progress (answered, total, next_image, done)
    POST /api/answer         {"reader_id", "image_id", "call", "quality", "comment"?,
                              "elapsed_ms"?} -> progress, after the answer is committed
    GET  /image/<image_id>   the image (PNG)

Errors are ``{"error": message}`` with 400 (bad value), 401 (token), 404 (unknown reader,
image or route), 405 (wrong method), 409 (image already answered by this reader: refused, the
first answer stands) or 413 (body over 64 KiB). docs/reader-study.md documents the API. The
answer key is never part of a response. Bound to a non-loopback address, every ``/api`` and
``/image`` request needs the study token: entered once on the start page and then kept in an
HttpOnly cookie, or sent as the ``X-Study-Token`` header by scripts.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from pathlib import Path
from typing import Any

from htd_core.errors import InputError
from htd_plugins.reader_study import page
from htd_plugins.reader_study.db import (
    DuplicateAnswerError,
    StudyDB,
    UnknownImageError,
    UnknownReaderError,
    open_study,
)

TOKEN_COOKIE = "htd_study_token"
TOKEN_HEADER = "X-Study-Token"
CSP = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(study: StudyDB, require_token: bool = False) -> Any:
    """The Flask app serving ``study``.

    Args:
        study: an opened study (see :func:`~htd_plugins.reader_study.db.open_study`).
        require_token: demand the study token on every ``/api`` and ``/image`` request.
    """
    from flask import Flask, Response, jsonify, request, send_file
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    token = study.token

    def error(status: int, message: str) -> Any:
        return jsonify(error=message), status

    def token_ok(given: Any) -> bool:
        return isinstance(given, str) and bool(token) and hmac.compare_digest(given, token)

    @app.before_request
    def check_token() -> Any:
        path = request.path
        if not require_token or path == "/api/info" or path == "/api/session":
            return None
        if path.startswith(("/api/", "/image/")):
            given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
            if not token_ok(given):
                return error(401, "this study needs its token: enter it on the start page")
        return None

    @app.after_request
    def headers(resp: Any) -> Any:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = CSP
        if not request.path.startswith("/image/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def index() -> Any:
        return Response(page.render(len(study.image_ids()), require_token), mimetype="text/html")

    @app.get("/app.js")
    def app_js() -> Any:
        return Response(page.JS, mimetype="text/javascript")

    @app.get("/app.css")
    def app_css() -> Any:
        return Response(page.CSS, mimetype="text/css")

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return Response(status=204)

    @app.get("/api/info")
    def info() -> Any:
        return jsonify(token_required=require_token, total=len(study.image_ids()))

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise InputError("the request body must be a JSON object")
        return data

    @app.post("/api/session")
    def session() -> Any:
        data = body()
        given = data.get("token") or request.headers.get(TOKEN_HEADER)
        if require_token and not token_ok(given or request.cookies.get(TOKEN_COOKIE)):
            return error(401, "wrong study token: ask the study organiser for it")
        resp = jsonify(study.start_reader(data.get("reader_id")).to_dict())
        if require_token:
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return resp

    @app.get("/api/progress")
    def progress() -> Any:
        return jsonify(study.progress(request.args.get("reader_id", "")).to_dict())

    @app.post("/api/answer")
    def answer() -> Any:
        data = body()
        prog = study.record_answer(
            data.get("reader_id"),
            data.get("image_id"),
            data.get("call"),
            data.get("quality"),
            data.get("comment") or "",
            data.get("elapsed_ms"),
        )
        return jsonify(prog.to_dict())

    @app.get("/image/<image_id>")
    def image(image_id: str) -> Any:
        path = study.image_path(image_id)
        resp = send_file(path, mimetype="image/png", max_age=3600, etag=False)
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    @app.errorhandler(UnknownReaderError)
    @app.errorhandler(UnknownImageError)
    def not_found(exc: Exception) -> Any:
        return error(404, str(exc))

    @app.errorhandler(DuplicateAnswerError)
    def duplicate(exc: Exception) -> Any:
        return error(409, str(exc))

    @app.errorhandler(InputError)
    def bad_input(exc: Exception) -> Any:
        return error(400, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:  # unknown route, wrong method, body too large
        return error(exc.code or 500, "not found" if exc.code == 404 else exc.description)

    return app


def make_server(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
                require_token: bool | None = None) -> tuple[Any, StudyDB, bool]:  # fmt: skip
    """A threaded WSGI server for the study (not yet serving) and whether it needs the token.

    Args:
        study_dir: the study folder.
        host: address to bind; a non-loopback address always requires the token.
        port: TCP port; 0 picks a free one (read it from ``server.port``).
        require_token: force the token on loopback too (``None``: only off loopback).
    """
    import socket

    from werkzeug.serving import make_server as wz_make_server
    from werkzeug.serving import select_address_family

    study = open_study(study_dir)
    need = bool(require_token) or not is_loopback(host)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:  # bind here: werkzeug would print and sys.exit on a busy port
        family = select_address_family(host, port)  # the family werkzeug will assume
        sock = socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port/--host"
        ) from exc
    try:
        server = wz_make_server(
            host, port, create_app(study, need), threaded=True, fd=sock.fileno()
        )
    finally:
        sock.close()  # the server holds its own duplicate of the socket
    return server, study, need
