"""``htd reader-study report`` on answers with a known key: numbers, files, plot."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from .conftest import check_planned_report, planned_answers


def test_report_numbers_and_files(make_study, study_cli, capsys) -> None:
    study = make_study(10)
    plan = planned_answers(study)
    for reader, answers in plan.items():
        study.start_reader(reader)
        for image_id, (call, quality) in answers.items():
            study.record_answer(reader, image_id, call, quality)
    assert study_cli(["report", study.root]) == 0
    out = capsys.readouterr().out
    folder = study.root / "report"
    rep = json.loads((folder / "report.json").read_text())
    check_planned_report(rep)
    md = (folder / "report.md").read_text()
    assert md in out
    assert "| ana | 10 | 7/10 = 70.0% [34.8%, 93.3%] | 0.3438 | 3/5 = 60.0%" in md
    assert "| ben | 10 | 10/10 = 100.0% [69.2%, 100.0%] | 0.001953 |" in md
    assert "Fleiss' kappa of the real/synthetic calls: **0.394**" in md
    with Image.open(folder / "report.png") as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 300
    # rerun replaces the report in place; no temp files left
    assert study_cli(["report", study.root]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "answers.csv", "images.csv", "report.json", "report.md", "report.png"]  # fmt: skip


def test_partial_study_report(make_study) -> None:
    from htd_plugins.reader_study.report import build_report

    study = make_study(10)
    study.start_reader("solo")
    first = study.order("solo")[0]
    study.record_answer("solo", first, "real", 5)
    rep = build_report(study)
    assert rep["pooled"]["n_answers"] == 1
    assert rep["agreement"]["fleiss_kappa"] is None and "two readers" in rep["agreement"]["note"]


def test_comments_per_image_table_csv_and_power_warning(make_study, study_cli, capsys) -> None:
    """Comments reach report.md and report.json; the per-image table and both CSVs agree
    with the answers; 10 answers per reader are flagged as underpowered."""
    study = make_study(10)
    plan = planned_answers(study)
    said = {"ana": "=HYPERLINK(x) nuclei | too round\nsecond line", "ben": "crisp glands"}
    for reader, answers in plan.items():
        study.start_reader(reader)
        for i, (image_id, (call, quality)) in enumerate(answers.items()):
            study.record_answer(reader, image_id, call, quality, said[reader] if i == 0 else "")
    assert study_cli(["report", study.root]) == 0
    capsys.readouterr()
    folder = study.root / "report"
    rep = json.loads((folder / "report.json").read_text())
    md = (folder / "report.md").read_text()
    first = study.image_ids()[0]
    assert {(c["reader_id"], c["image_id"], c["comment"]) for c in rep["comments"]} == {
        ("ana", first, said["ana"]), ("ben", first, said["ben"])}  # fmt: skip
    assert "## Reader comments" in md and "| crisp glands |" in md
    assert "=HYPERLINK(x) nuclei \\| too round second line |" in md  # one cell, one line
    # per image: study order, set, truth, counts; ana is wrong on 3 images, ben never
    key = {r["image_id"]: r for r in study.images()}
    assert [r["image_id"] for r in rep["images"]] == study.image_ids()
    for row in rep["images"]:
        truth = key[row["image_id"]]["truth"]
        ana_call = plan["ana"][row["image_id"]][0]
        assert row["truth"] == truth and row["answers"] == 2
        assert row["correct"] == 1 + (ana_call == truth)
        assert row["called_synthetic"] == (ana_call == "synthetic") + (truth == "synthetic")
        assert row["mean_quality"] == pytest.approx((3 + (4 if truth == "real" else 2)) / 2)
    assert sum(r["correct"] for r in rep["images"]) == 17
    assert f"| `{first}` | " in md and "## Per image" in md
    with open(folder / "images.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == study.image_ids()
    assert [int(r["correct"]) for r in rows] == [r["correct"] for r in rep["images"]]
    with open(folder / "answers.csv", newline="") as fh:
        answers = list(csv.DictReader(fh))
    assert len(answers) == 20 and sum(int(a["correct"]) for a in answers) == 17
    comment = next(a["comment"] for a in answers if a["reader_id"] == "ana" and a["comment"])
    assert comment == "'" + said["ana"]  # a formula-looking comment is shown as text
    for text in (md, json.dumps(rep), (folder / "answers.csv").read_text()):
        assert "SECRET" not in text  # source file names stay in study.sqlite
    # power: 10 answers detect only a reader right >= 91.7% of the time; warned
    assert rep["readers"]["ana"]["power"]["min_detectable_accuracy"] == pytest.approx(
        0.9167, abs=1e-3)  # fmt: skip
    assert rep["readers"]["ana"]["power"]["underpowered"] is True
    assert "| ana | 10 | 7/10 = 70.0% [34.8%, 93.3%] |" in md
    assert "| yes (**underpowered**) | 91.7% |" in md
    assert "**Warning: low power.** ana (10 answers), ben (10 answers), **pooled** (20 " in md
    assert "needs at least 97 answers" in md
