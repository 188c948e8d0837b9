"""``htd sample`` on the real tile folders and the real slide, resume after kill -9, errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from htd_core.cli import main
from htd_core.dataset import Dataset

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "annotations"


@pytest.fixture(scope="module", autouse=True)
def _tiatoolbox_imported() -> None:
    import tiatoolbox.wsicore.wsireader  # noqa: F401 (routes warnings to logging on import)


def rule_ok(mask: np.ndarray, k: int) -> bool:
    labelled = mask[mask < k]
    if labelled.size < 0.5 * mask.size:
        return False
    frac = np.bincount(labelled.astype(np.int64), minlength=k) / labelled.size
    return int(((frac >= 0.2) & (frac <= 0.8)).sum()) >= 2


def tcga_args(shared_data, out, *extra, mpp="2.0", patch_size="128") -> list[str]:
    slide = shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
    return ["sample", "heterogeneous", "--out", str(out), "-o", f"slide={slide}", "-o", "slide_mpp=2.0",
            "-o", f"mpp={mpp}", "-o", f"patch_size={patch_size}", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("folder", "options", "k"),
    [
        ("glas", ["rule=heterogeneous"], 2),
        ("camelyon_mini", ["patch_size=256", "stride=128", "rule=heterogeneous"], 2),
        ("wsss4luad_val", ["classes={0: tumor_epithelium, 1: tumor_stroma, 2: normal_lung, 3: '@ignore'}",
                           "patch_size=128", "stride=64", "rule=heterogeneous"], 3),
    ],
)  # fmt: skip
def test_tile_folders(shared_data, tmp_path, folder, options, k):
    args = [
        "sample",
        "tiles",
        "--out",
        str(tmp_path / "ds"),
        "-o",
        f"root={shared_data / folder}",
        "--limit",
        "6",
    ]
    for opt in options:
        args += ["-o", opt]
    assert main(args) == 0
    data = Dataset(tmp_path / "ds")
    assert len(data) == 6 and len(data.class_map) == k
    for sample in data:  # the rule, from the written mask files
        assert rule_ok(sample.mask, k)
    assert {f"frac:{n}" for n in data.class_map.names} <= set(data.rows[0])


@pytest.mark.parametrize("kind", ["geojson", "xml"])
def test_real_slide_with_polygon_annotations(shared_data, tmp_path, kind, capsys):
    if kind == "geojson":
        extra = [
            "-o",
            f"annotations={ANNOTATIONS / 'tcga_cr_7395.geojson'}",
            "-o",
            "classes=[tumor, stroma, inflammation]",
        ]
    else:
        extra = ["-o", f"annotations={ANNOTATIONS / 'tcga_cr_7395_asap.xml'}", "-o", "classes=[tumor, stroma]",
                 "-o", "label_map={_0: tumor, _1: tumor}"]  # fmt: skip
    out = tmp_path / "ds"
    with pytest.warns() if kind == "xml" else _nothing():  # the XML's one Dot is reported
        assert main(tcga_args(shared_data, out, *extra, "--limit", "3")) == 0
    data = Dataset(out)
    assert len(data) == 3
    k = len(data.class_map)
    assert all(rule_ok(s.mask, k) and s.image.shape == (128, 128, 3) for s in data)
    # nothing but the dataset: no label/macro image, no slide metadata, no path
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    # (contact_sheet.png draws the dataset's own patches and masks, nothing else)
    assert files == {"classes.json", "manifest.csv", "sampling.json", "htd-output.json"} | {
        f"{d}/{i:06d}.png" for d in ("images", "masks") for i in range(3)
    } | {"contact_sheet.png"}
    text = (out / "manifest.csv").read_text() + (out / "sampling.json").read_text()
    assert "TCGA" not in text and "slides" not in text and "aperio" not in text.lower()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_resume_after_kill_9(shared_data, tmp_path):
    root = shared_data / "camelyon_mini"
    opts = ["-o", f"root={root}", "-o", "patch_size=128", "-o", "stride=128"]
    killed = tmp_path / "killed"
    env = {**os.environ, "HTD_DISABLED_PLUGINS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "htd_core.cli", "sample", "tiles", "--out", str(killed), *opts, "--limit", "400"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    manifest = killed / "manifest.csv"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 4:  # header + 3 rows
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill = manifest.read_text().count("\n") - 1
    assert 3 <= rows_at_kill < 400
    assert main(["sample", "tiles", "--out", str(killed), *opts, "--limit", "40"]) == 0
    clean = tmp_path / "clean"
    assert main(["sample", "tiles", "--out", str(clean), *opts, "--limit", "40"]) == 0
    assert (killed / "manifest.csv").read_text() == (clean / "manifest.csv").read_text()
    for i in range(40):
        for sub in ("images", "masks"):
            assert (killed / sub / f"{i:06d}.png").read_bytes() == (
                clean / sub / f"{i:06d}.png"
            ).read_bytes()
    assert not list(killed.rglob(".*.tmp")) and len(list((killed / "images").iterdir())) == 40


def test_resume_with_other_options_is_refused(shared_data, tmp_path, capsys):
    args = [
        "sample",
        "tiles",
        "--out",
        str(tmp_path / "ds"),
        "-o",
        f"root={shared_data / 'glas'}",
        "--limit",
        "2",
    ]
    assert main(args) == 0
    assert main([*args, "-o", "rule=heterogeneous"]) == 2
    assert "sampled with other options" in capsys.readouterr().err


def test_slide_without_tissue_says_why_and_writes_nothing(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(np.clip(rng.normal(242, 2, (400, 500, 3)), 0, 255).astype(np.uint8)).save(
        tmp_path / "glass.png"
    )
    args = ["sample", "heterogeneous", "--out", str(tmp_path / "ds"), "-o", f"slide={tmp_path / 'glass.png'}",
            "-o", "slide_mpp=0.5", "-o", "classes=[a, b]", "-o", "patch_size=128"]  # fmt: skip
    with pytest.warns(UserWarning, match="no tissue found"):
        assert main(args) == 2  # was: exit 0 and an empty dataset
    err = capsys.readouterr().err
    assert re.search(r"0 samples: \d+ windows of 128 px scanned on 1 slide\(s\); \d+ had less", err)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"args": ["-o", "patch_size"]}, "KEY=VALUE"),
        ({"args": ["-o", "min_fraq=0.3"]}, "Did you mean 'min_frac'"),
        ({"mpp": "0.5"}, "finer than slide"),
        ({"patch_size": "4096"}, "larger than slide"),
    ],
)
def test_user_errors_exit_2(shared_data, tmp_path, capsys, extra, message):
    args = tcga_args(shared_data, tmp_path / "ds", "-o", "classes=[tumor, stroma, inflammation]",
                     "-o", f"annotations={ANNOTATIONS / 'tcga_cr_7395.geojson'}", *extra.get("args", []),
                     mpp=extra.get("mpp", "2.0"), patch_size=extra.get("patch_size", "128"))  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()  # nothing written on a bad input


def test_missing_slide_and_unknown_sampler(tmp_path, capsys):
    assert (
        main(
            [
                "sample",
                "heterogeneous",
                "--out",
                str(tmp_path / "ds"),
                "-o",
                "slide=none.svs",
                "-o",
                "classes=[a, b]",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["sample", "heterogenous", "--out", str(tmp_path / "ds2")]) == 2
    assert "Did you mean 'heterogeneous'" in capsys.readouterr().err


def test_config_file(shared_data, tmp_path):
    cfg = tmp_path / "sampler.yaml"
    cfg.write_text(f"root: {shared_data / 'camelyon_mini'}\npatch_size: 256\nrule: heterogeneous\n")
    assert (
        main(
            [
                "sample",
                "tiles",
                "--out",
                str(tmp_path / "ds"),
                "--config",
                str(cfg),
                "-o",
                "stride=256",
                "--limit",
                "2",
            ]
        )
        == 0
    )
    assert len(Dataset(tmp_path / "ds")) == 2


def test_a_class_with_no_region_anywhere_is_named(shared_data, tmp_path):
    """`necrosis` listed but never annotated: it passed silently, training an empty channel."""
    from htd_core.coverage import EmptyClassWarning

    args = ["sample", "tiles", "--out", str(tmp_path / "ds"), "-o", f"root={shared_data / 'glas'}",
            "-o", "classes=[non_gland, gland, necrosis]", "--limit", "4"]  # fmt: skip
    with pytest.warns(EmptyClassWarning, match=r"'necrosis' has no region in any of the 4 samples"):
        assert main(args) == 0
