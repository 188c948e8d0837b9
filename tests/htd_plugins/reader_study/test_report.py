"""``htd reader-study report`` on answers with a known key: numbers, files, plot."""

from __future__ import annotations

import json

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
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md", "report.png"]


def test_partial_study_report(make_study) -> None:
    from htd_plugins.reader_study.report import build_report

    study = make_study(10)
    study.start_reader("solo")
    first = study.order("solo")[0]
    study.record_answer("solo", first, "real", 5)
    rep = build_report(study)
    assert rep["pooled"]["n_answers"] == 1
    assert rep["agreement"]["fleiss_kappa"] is None and "two readers" in rep["agreement"]["note"]
