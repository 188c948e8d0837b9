"""Blinded reader study: pathologists rate real vs synthetic H&E images in the browser.

A study is a folder made by :func:`~htd_plugins.reader_study.sampling.create_study`::

    STUDY/study.sqlite      answer key, readers, answers (WAL; never sent to the browser)
    STUDY/images/<id>.png   the sampled images, re-encoded without metadata, opaque ids
    STUDY/report/           written by ``htd reader-study report``

:mod:`~htd_plugins.reader_study.server` serves it to readers (Flask, plain HTML/JS) and
:mod:`~htd_plugins.reader_study.report` turns the answers into statistics. The modules import
Flask, scipy and matplotlib lazily.
"""

from __future__ import annotations

from htd_plugins.reader_study.db import DB_NAME, SCHEMA_VERSION, StudyDB, open_study

__all__ = ["DB_NAME", "SCHEMA_VERSION", "StudyDB", "open_study"]
