"""Per-image and per-answer tables of a reader study: the report's image table, its reader
comments, and the CSV exports ``images.csv`` and ``answers.csv``.

Images are named by their study ids (random, 16 hex digits) and set names only: the source
file names of the answer key never leave ``study.sqlite``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

#: Columns of ``answers.csv`` (one row per answer), in order.
ANSWER_COLUMNS = ("reader_id", "image_id", "set_name", "truth", "call", "correct", "quality",
                  "comment", "elapsed_ms", "answered_at")  # fmt: skip
#: Columns of ``images.csv`` (one row per study image), in order.
IMAGE_COLUMNS = ("image_id", "set_name", "truth", "answers", "called_synthetic", "correct",
                 "accuracy", "mean_quality", "comments")  # fmt: skip
#: A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def per_image(
    images: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per study image (study order): its answers, how many called it synthetic, how
    many were correct, the accuracy on it, its mean quality and its comment count.

    Args:
        images: rows with ``image_id``, ``set_name`` and ``truth``, in study order.
        answers: rows with ``image_id``, ``call``, ``truth``, ``quality`` and ``comment``.

    Returns:
        dicts with the keys of :data:`IMAGE_COLUMNS`; ``accuracy`` and ``mean_quality`` are
        None for an image nobody answered.
    """
    by_image: dict[str, list[Mapping[str, Any]]] = {}
    for a in answers:
        by_image.setdefault(a["image_id"], []).append(a)
    rows = []
    for img in images:
        got = by_image.get(img["image_id"], [])
        n, correct = len(got), sum(a["call"] == a["truth"] for a in got)
        rows.append({
            "image_id": img["image_id"], "set_name": img["set_name"], "truth": img["truth"],
            "answers": n, "called_synthetic": sum(a["call"] == "synthetic" for a in got),
            "correct": correct, "accuracy": correct / n if n else None,
            "mean_quality": sum(a["quality"] for a in got) / n if n else None,
            "comments": sum(bool(a["comment"]) for a in got),
        })  # fmt: skip
    return rows


def comments(answers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The answers that carry a comment: reader, image, set, truth, call, quality, comment."""
    keys = ("reader_id", "image_id", "set_name", "truth", "call", "quality", "comment")
    return [{k: a[k] for k in keys} for a in answers if a["comment"]]


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # shown as text, never run as a formula
    return value


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text (header + rows, ``\\r\\n`` line ends as RFC 4180); text cells that a
    spreadsheet would run as a formula get a leading ``'``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def answers_csv(answers: Sequence[Mapping[str, Any]]) -> str:
    """``answers.csv``: every answer with its key and ``correct`` (1/0)."""
    rows = [{**a, "correct": int(a["call"] == a["truth"])} for a in answers]
    return to_csv(rows, ANSWER_COLUMNS)


def _md(text: str) -> str:
    """One Markdown table cell: pipes escaped, line breaks as spaces."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown_sections(rep: Mapping[str, Any]) -> list[str]:
    """Report lines: the per-image table and the reader comments."""
    lines = ["## Per image", "",
             "Every image of the study in study order (`images.csv` holds the same table; "
             "`answers.csv` every answer).", "",
             "| image | set | truth | answers | called synthetic | accuracy | mean quality "
             "| comments |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rep["images"]:
        lines.append(
            f"| `{r['image_id']}` | {r['set_name']} | {r['truth']} | {r['answers']} | "
            f"{r['called_synthetic']} | {_num(r['accuracy'], '.0%')} | "
            f"{_num(r['mean_quality'], '.2f')} | {r['comments']} |"
        )
    lines += ["", "## Reader comments", ""]
    if not rep["comments"]:
        return [*lines, "No reader wrote a comment.", ""]
    lines += ["| reader | image | set | truth | call | quality | comment |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in rep["comments"]:
        lines.append(
            f"| {_md(c['reader_id'])} | `{c['image_id']}` | {c['set_name']} | {c['truth']} | "
            f"{c['call']} | {c['quality']} | {_md(c['comment'])} |"
        )
    return [*lines, ""]
