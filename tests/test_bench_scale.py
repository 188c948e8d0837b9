"""The scale benchmarks (issue 25, items 3 and 5) run at their smallest size and print the
numbers docs/scale.md takes from them. No wall time is asserted."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(name: str, args: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as exc:  # the script's sys.exit(main())
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
    assert exc.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_kmeans_benchmark_compares_three_variants_on_one_definition(monkeypatch, capsys):
    pytest.importorskip("faiss", reason="faiss-cpu is in the dev extra")
    args = ["--n", "3000", "--dim", "32", "--k", "10", "--repeats", "1", "--threads", "1"]
    out = run_benchmark("bench_kmeans_faiss.py", args, monkeypatch, capsys)
    assert "synthetic mixture" in out and out.count("uptime") == 2
    rows = {}
    for variant in ("htd", "faiss", "faiss-full"):
        found = re.search(
            rf"^{variant} +\S+ \(\S+\) +(\d+) +-?\d+ +(\S+) +(\S+) +(\S+)$", out, re.M
        )
        assert found, f"no summary row of {variant} in:\n{out}"
        rows[variant] = [float(v) for v in found.groups()]
    assert rows["htd"][2:] == [1.0, 1.0]  # the ratios' reference
    for peak, inertia, _, ratio in rows.values():
        assert peak > 0 and inertia > 0
        assert ratio == pytest.approx(inertia / rows["htd"][1], abs=1e-3)
    # the faiss backend starts from htd's k-means++ on the same fit sample: a comparable result
    assert rows["faiss"][3] < 1.2


def test_kmeans_benchmark_names_a_bad_variant(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_kmeans_faiss.py", "--variants", "htd,sklearn"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(BENCHMARKS / "bench_kmeans_faiss.py"), run_name="__main__")
    assert exc.value.code == 2
    assert "--variants: unknown ['sklearn']" in capsys.readouterr().err


def test_scale_plan_measures_reading_and_encoding(shared_data, monkeypatch, capsys):
    args = ["--teachers", "inception_fid", "--read-patches", "2", "--encode-patches", "2",
            "--repeats", "1", "--cluster-seconds", "10", "--cluster-rows", "1000",
            "--diversity-rows", "3000"]  # fmt: skip
    out = run_benchmark("tcga_scale_plan.py", args, monkeypatch, capsys)
    reads = re.findall(r"read 224 px at \S+ um/px, (\w+) slide .*: ([\d.]+) ms/patch", out)
    assert [slide for slide, _ in reads] == ["CMU", "TCGA"]
    assert all(float(ms) > 0 for _, ms in reads)
    rate = re.search(r"^inception_fid +2048 +([\d.]+) +([\d.]+) +([\d.]+)", out, re.M)
    assert rate and float(rate.group(2)) == pytest.approx(1 / float(rate.group(1)), rel=0.02)
    assert float(rate.group(3)) == pytest.approx(11.4, rel=0.05)  # GFLOPs: machine-independent
    assert "no GPU here" in out or "measured on" in out
    assert "10 s at 1,000 rows -> at most 32.68 h" in out  # 11,765,000 / 1,000 x 10 s
    assert "2,160 GPU-hours = 82 patches/s" in out
    assert re.search(r"diversity sampling .*: [\d.]+ s for a slide of 3,000 patches -> [\d,.]+ "
                     r"core-hours for 11,765 slides, reading 1.3 TB", out)  # fmt: skip


def test_shard_read_benchmark_reads_every_patch_of_both_layouts(monkeypatch, capsys):
    bench = runpy.run_path(str(BENCHMARKS / "bench_shards.py"), run_name="bench_shards")
    bench["main"](["read", "--n", "40", "--size", "16", "--shard-size", "10", "--repeats", "2"])
    out = capsys.readouterr().out
    assert (
        "40 patches of 16 px, shards of 10, 2 repeats" in out
        and "load before:" in out
        and "load after:" in out
    )
    rows = re.findall(r"^(png folder|shards, in order|shards, stream) +median +(\d+) samples/s"
                      r" +\((\d+), (\d+)\) +ratio to png ([\d.]+)x$", out, re.M)  # fmt: skip
    assert [r[0] for r in rows] == ["png folder", "shards, in order", "shards, stream"]
    assert rows[0][4] == "1.00" and all(int(r[1]) > 0 for r in rows)
