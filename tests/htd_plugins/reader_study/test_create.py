"""``htd reader-study create``: balanced seeded sample, opaque ids, stripped metadata, and
bad inputs that fail with one line, exit 2 and leave nothing behind."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from htd_core.errors import InputError
from htd_plugins.reader_study.db import DB_NAME, open_study
from htd_plugins.reader_study.sampling import ImageSet, create_study

from .conftest import write_images


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a content hash (folders as 'dir')."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


def key(study_dir: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(study_dir / DB_NAME)) as c:
        return c.execute(
            "SELECT id, set_name, truth, source FROM images ORDER BY position"
        ).fetchall()


def test_balanced_seeded_sample_with_opaque_ids(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_images(real, 12, "slide-A")
    a, b = tmp_path / "gen_a", tmp_path / "gen_b"
    write_images(a, 6, "a-img", seed=3)
    write_images(b, 6, "b-img", seed=4)
    sets = [ImageSet("real", "real", real), ImageSet("ldm", "synthetic", a),
            ImageSet("gan", "synthetic", b)]  # fmt: skip
    info = create_study(tmp_path / "s1", sets, 10, seed=7)
    assert info["sets"] == {"real": 5, "ldm": 3, "gan": 2}
    rows = key(tmp_path / "s1")
    assert [r[2] for r in rows].count("real") == 5
    assert [r[2] for r in rows].count("synthetic") == 5
    files = sorted(p.name for p in (tmp_path / "s1" / "images").iterdir())
    assert files == sorted(f"{r[0]}.png" for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{16}\.png", f) for f in files)
    assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == ["images", DB_NAME]
    # same seed -> same images drawn (ids are random); other seed -> another draw
    create_study(tmp_path / "s2", sets, 10, seed=7)
    create_study(tmp_path / "s3", sets, 10, seed=8)
    assert sorted(r[1:] for r in key(tmp_path / "s2")) == sorted(r[1:] for r in rows)
    assert sorted(r[1:] for r in key(tmp_path / "s3")) != sorted(r[1:] for r in rows)
    assert {r[0] for r in key(tmp_path / "s2")}.isdisjoint(r[0] for r in rows)
    # the copied pixels are the source pixels
    study = open_study(tmp_path / "s1")
    img_id, set_name, _, source = rows[0]
    folder = {"real": real, "ldm": a, "gan": b}[set_name]
    assert np.array_equal(
        np.asarray(Image.open(study.image_path(img_id))), np.asarray(Image.open(folder / source))
    )


def test_dataset_folder_uses_images_subfolder(tmp_path: Path) -> None:
    ds = tmp_path / "dataset"
    write_images(ds / "images", 4, "img")
    write_images(ds / "masks", 4, "mask")
    syn = tmp_path / "syn"
    write_images(syn, 4, "gen")
    from htd_plugins.reader_study.sampling import image_folder

    assert image_folder(ds, "--real") == ds / "images"
    create_study(tmp_path / "s", [ImageSet("real", "real", image_folder(ds, "--real")),
                                  ImageSet("synthetic", "synthetic", syn)], 8)  # fmt: skip
    assert sorted(r[3] for r in key(tmp_path / "s") if r[2] == "real") == [
        f"img_{i:03d}.png" for i in range(4)
    ]


def test_metadata_is_stripped(tmp_path: Path) -> None:
    real, syn = tmp_path / "real", tmp_path / "syn"
    real.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "slide TCGA-XX-1234 patient 42")
    info.add_itxt("Source", "/secret/path/slide.svs")
    Image.fromarray(pixels).save(real / "a.png", pnginfo=info)
    exif = Image.Exif()
    exif[0x010E] = "ImageDescription TCGA-XX-1234"  # ImageDescription
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(real / "b.jpg", exif=exif.tobytes(), quality=95)
    write_images(syn, 2, "gen")
    create_study(tmp_path / "s", [ImageSet("real", "real", real),
                                  ImageSet("synthetic", "synthetic", syn)], 4)  # fmt: skip
    study = open_study(tmp_path / "s")
    rows = {r[3]: r[0] for r in key(tmp_path / "s")}
    for source in ("a.png", "b.jpg"):
        data = study.image_path(rows[source]).read_bytes()
        assert set(png_chunks(data)) <= {b"IHDR", b"IDAT", b"IEND"}, source
        assert b"TCGA" not in data and b"secret" not in data
        im = Image.open(io.BytesIO(data))
        assert im.mode == "RGB" and not im.info.get("exif")
    assert Image.open(study.image_path(rows["b.jpg"])).size == (20, 30)  # orientation applied
    assert np.array_equal(np.asarray(Image.open(study.image_path(rows["a.png"]))), pixels)


def run_bad(study_cli, capsys, tmp_path: Path, argv: list) -> str:
    before = snapshot(tmp_path)
    assert study_cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before, "a failed command changed the folder"
    return err


def test_cli_bad_inputs_one_line_exit_2_nothing_left(
    study_cli, capsys, tmp_path: Path, image_dirs
) -> None:
    real, syn = image_dirs["real"], image_dirs["synthetic"]
    err = run_bad(study_cli, capsys, tmp_path,
                  ["create", "--real", tmp_path / "nope", "--synthetic", syn, "--out", tmp_path / "o"])  # fmt: skip
    assert "--real" in err and "nope" in err
    err = run_bad(study_cli, capsys, tmp_path,
                  ["create", "--real", real, "--synthetic", tmp_path / "gone", "--out", tmp_path / "o"])  # fmt: skip
    assert "--synthetic" in err and "gone" in err
    err = run_bad(study_cli, capsys, tmp_path, ["create", "--real", real, "--synthetic", syn,
                                                "--n", 40, "--out", tmp_path / "new" / "deeper"])  # fmt: skip
    assert "--n 40" in err and "holds 8" in err and "lower --n" in err
    run_bad(study_cli, capsys, tmp_path,
            ["create", "--real", real, "--synthetic", syn, "--n", 7, "--out", tmp_path / "o"])  # fmt: skip
    run_bad(study_cli, capsys, tmp_path, ["create", "--real", real, "--out", tmp_path / "o"])
    other = tmp_path / "my_results"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    err = run_bad(study_cli, capsys, tmp_path,
                  ["create", "--real", real, "--synthetic", syn, "--out", other])  # fmt: skip
    assert "my_results" in err and "not an htd reader study" in err
    assert (
        study_cli(
            ["create", "--real", real, "--synthetic", syn, "--n", 4, "--out", tmp_path / "st"]
        )
        == 0
    )
    capsys.readouterr()
    err = run_bad(study_cli, capsys, tmp_path,
                  ["create", "--real", real, "--synthetic", syn, "--out", tmp_path / "st"])  # fmt: skip
    assert "already holds a reader study" in err
    run_bad(study_cli, capsys, tmp_path, ["report", tmp_path / "st"])  # no answers yet
    run_bad(study_cli, capsys, tmp_path, ["serve", tmp_path / "my_results", "--port", 0])
    run_bad(study_cli, capsys, tmp_path, ["report", tmp_path / "nowhere"])
    run_bad(study_cli, capsys, tmp_path, [])  # no stage


def test_unreadable_image_leaves_nothing(tmp_path: Path, image_dirs) -> None:
    bad = tmp_path / "bad"
    write_images(bad, 3, "ok")
    (bad / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = snapshot(tmp_path)
    out = tmp_path / "a" / "b" / "study"
    with pytest.raises(InputError, match="zz_broken.png"):
        create_study(out, [ImageSet("real", "real", image_dirs["real"]),
                           ImageSet("synthetic", "synthetic", bad)], 8)  # fmt: skip
    assert snapshot(tmp_path) == before


def test_empty_existing_out_is_used(tmp_path: Path, image_dirs) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    sets = [ImageSet("real", "real", image_dirs["real"]),
            ImageSet("synthetic", "synthetic", image_dirs["synthetic"])]  # fmt: skip
    create_study(out, sets, 4)
    assert open_study(out).image_ids() and len(list(tmp_path.glob(".*htd-tmp*"))) == 0


def test_invalid_set_names(tmp_path: Path, image_dirs) -> None:
    real, syn = image_dirs["real"], image_dirs["synthetic"]
    with pytest.raises(InputError, match="not 'real'"):
        create_study(tmp_path / "s", [ImageSet("real", "real", real),
                                      ImageSet("real", "synthetic", syn)], 4)  # fmt: skip
    with pytest.raises(InputError, match="same image folder"):
        create_study(tmp_path / "s", [ImageSet("real", "real", real),
                                      ImageSet("x", "synthetic", real)], 4)  # fmt: skip


def test_unknown_schema_version_is_a_clear_error(study_cli, capsys, make_study) -> None:
    study = make_study(4)
    for version in ("0", "99"):
        with contextlib.closing(sqlite3.connect(study.path)) as c, c:
            c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
        with pytest.raises(InputError, match=f"schema version {version}, this htd reads version 1"):
            open_study(study.root)
        assert study_cli(["report", study.root]) == 2
        err = capsys.readouterr().err
        assert f"schema version {version}" in err and "Traceback" not in err


def test_entry_point_registers_the_verb(builtin_manager) -> None:
    assert "reader-study" in builtin_manager.commands.names()


def test_size_mismatch_warns(study_cli, capsys, tmp_path: Path, image_dirs) -> None:
    big = tmp_path / "big"
    write_images(big, 4, "gen", size=32)
    argv = ["create", "--real", image_dirs["real"], "--synthetic", big, "--n", 4]
    assert study_cli([*argv, "--out", tmp_path / "s1"]) == 0
    err = capsys.readouterr().err
    assert "differ in size" in err and "24x24" in err and "32x32" in err
    argv[4] = image_dirs["synthetic"]
    assert study_cli([*argv, "--out", tmp_path / "s2"]) == 0
    assert capsys.readouterr().err == ""


def test_a_study_created_by_another_run_meanwhile_stands(tmp_path, image_dirs, monkeypatch):
    """Two `create` runs into one --out: the second finds it filled when it renames its
    staging folder; one line, the first study untouched, no staging folder left."""
    from htd_plugins.reader_study import sampling

    out = tmp_path / "study"
    plan = sampling.plan

    def plan_while_another_run_creates(*args, **kwargs):
        chosen = plan(*args, **kwargs)
        out.mkdir()
        (out / "study.sqlite").write_bytes(b"the other run's study")
        return chosen

    monkeypatch.setattr(sampling, "plan", plan_while_another_run_creates)
    sets = [ImageSet("real", "real", image_dirs["real"]),
            ImageSet("s", "synthetic", image_dirs["synthetic"])]  # fmt: skip
    with pytest.raises(InputError, match=f"--out {re.escape(str(out))} was filled by another run"):
        create_study(out, sets, 4, 0)
    assert [p.name for p in out.iterdir()] == ["study.sqlite"]
    assert (out / "study.sqlite").read_bytes() == b"the other run's study"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".study.")]
