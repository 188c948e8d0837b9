"""``generate_slide`` / ``htd generate-slide``: a slide that real tools open, reproducible and
resumable, sampled like a real annotated slide, with provenance by opaque id only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from htd_core.cli import main
from htd_core.interfaces import Encoder
from htd_plugins.slide_synthesis import SlideLayout, generate_slide, output_paths, read_layout

MPP = 2.0  # um/px the conftest's model was trained at


@pytest.fixture
def make_layout(pipe, draw):
    """``make_layout(height, width, seed)``: a blob layout in the model's classes."""

    def make(height: int = 80, width: int = 100, seed: int = 0) -> SlideLayout:
        return SlideLayout(draw.blob_mask(height, width, seed), pipe.backbone.class_map, MPP)

    return make


def level0(path) -> np.ndarray:
    return tifffile.imread(path, key=0)


def test_slide_opens_in_openslide_and_tiatoolbox_at_every_level(
    pipe, tmp_path, capsys, make_layout
):
    import openslide
    from tiatoolbox.wsicore.wsireader import WSIReader

    out = tmp_path / "slide.tif"
    summary = generate_slide(pipe, make_layout(), out, tile=32, progress=True)
    assert "windows x 2 steps" in capsys.readouterr().err  # the bar counts windows x steps
    assert summary["levels"] == [[100, 80], [50, 40], [25, 20]]
    slide = openslide.OpenSlide(str(out))
    assert slide.level_dimensions == ((100, 80), (50, 40), (25, 20))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(MPP)
    assert dict(slide.associated_images) == {}  # no label or macro image
    for level in range(slide.level_count):
        region = np.asarray(slide.read_region((0, 0), level, (20, 16)))
        assert region.shape == (16, 20, 4) and region[..., 3].min() == 255
    reader = WSIReader.open(out)
    assert type(reader).__name__ == "TIFFWSIReader"
    assert reader.info.level_count == 3
    assert reader.info.mpp == pytest.approx([MPP, MPP])
    for level in range(3):
        assert reader.read_rect((0, 0), (20, 16), resolution=level, units="level").shape == (
            16,
            20,
            3,
        )
    # the label mask at the same geometry and mpp, and the layout as QuPath GeoJSON
    paths = output_paths(out)
    mask = tifffile.imread(paths["label_mask"])
    assert np.array_equal(mask, make_layout().mask)
    with tifffile.TiffFile(paths["label_mask"]) as tif:
        assert tif.pages[0].tags["XResolution"].value[0] / tif.pages[0].tags["XResolution"].value[
            1
        ] == pytest.approx(1e4 / MPP)
    again = read_layout(paths["label_mask"], make_layout().class_map)
    assert again.mpp == pytest.approx(MPP) and np.array_equal(again.mask, mask)  # a layout again
    features = json.loads(paths["geojson"].read_text())["features"]
    assert {f["properties"]["classification"]["name"] for f in features} == {"stroma", "gland"}
    assert not paths["checkpoint"].exists()  # removed when the slide is complete


def test_geojson_round_trips_to_the_label_mask(pipe, tmp_path, draw):
    from htd_plugins.slide_synthesis.outputs import layout_geojson

    mask = draw.blob_mask(64, 96, seed=3)
    mask[10:20, 30:40] = 0  # a hole of stroma inside a gland
    mask[8:22, 28:42][mask[8:22, 28:42] == 0] = 1
    mask[10:20, 30:40] = 0
    path = tmp_path / "layout.geojson"
    path.write_text(json.dumps(layout_geojson(mask, pipe.backbone.class_map)))
    back = read_layout(path, pipe.backbone.class_map, mpp=MPP, size=(96, 64))
    assert (back.mask == mask).mean() > 0.995


def test_same_seed_same_slide_and_resume_after_interruption(pipe, tmp_path, make_layout):
    opts = {"seed": 3, "scheduler": "dpmsolver++", "num_inference_steps": 3, "progress": False}
    first = tmp_path / "a.tif"
    generate_slide(pipe, make_layout(48, 40), first, **opts)
    again = tmp_path / "b.tif"
    generate_slide(pipe, make_layout(48, 40), again, **opts)
    assert np.array_equal(level0(first), level0(again))

    class Stop(Exception):
        pass

    def stop_after_one(step, total):
        if step == 1:  # DPM-Solver++'s next step needs the saved model output: order 2
            raise Stop

    resumed = tmp_path / "c.tif"
    with pytest.raises(Stop):
        generate_slide(pipe, make_layout(48, 40), resumed, callback=stop_after_one, **opts)
    assert not resumed.exists() and (output_paths(resumed)["checkpoint"] / "state.pt").is_file()
    steps = []
    generate_slide(
        pipe, make_layout(48, 40), resumed, callback=lambda s, t: steps.append(s), **opts
    )
    assert steps == [2, 3]  # continued from the checkpoint of step 1
    assert np.array_equal(level0(first), level0(resumed))
    with pytest.raises(Exception, match="other settings"):
        other = tmp_path / "d.tif"
        with pytest.raises(Stop):
            generate_slide(pipe, make_layout(48, 40), other, callback=stop_after_one, **opts)
        generate_slide(pipe, make_layout(48, 40), other, **{**opts, "seed": 4})


def test_overlap_blends_and_zero_overlap_tiles(pipe, tmp_path, make_layout):
    """With overlap, every window is a weighted mean of its neighbours' predictions; without,
    the windows are independent patches: another slide from the same noise."""
    blended = tmp_path / "blended.tif"
    naive = tmp_path / "naive.tif"
    generate_slide(pipe, make_layout(64, 64), blended, progress=False)
    summary = generate_slide(pipe, make_layout(64, 64), naive, overlap=0.0, decode_overlap=0.0,
                             decode_tile=8, progress=False)  # fmt: skip
    assert summary["windows"]["count"] == 16 and summary["windows"]["stride_px"] == 16
    assert not np.array_equal(level0(blended), level0(naive))
    from htd_plugins.slide_synthesis import seam_report

    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(40)]
    reports = seam_report([blended, naive], encoders=[ColourStats()], reference=real,
                          reference_groups=[i // 4 for i in range(40)], max_patches=8)  # fmt: skip
    assert reports["naive.tif"]["gradient"]["edge_lines"] == 6  # edges at 16, 32, 48 x 2 axes
    assert reports["blended.tif"]["gradient"]["edge_lines"] > 6
    fd = reports["naive.tif"]["fd"]["colour_stats"]
    assert fd["n"] == 8 and len(fd["real_vs_real"]) == 3  # 8 of 9 straddling, 2 x 8 of 16 centred
    assert np.isfinite(
        [fd["straddling_vs_centred"], fd["centred_vs_centred"], *fd["real_vs_real"]]
    ).all()


class ColourStats(Encoder):
    """Mean and standard deviation of each channel: a 6-d encoder for bookkeeping tests."""

    name, embed_dim, input_size, weights_id = "colour_stats", 6, 16, "none"

    def forward(self, pixels):
        return torch.cat([pixels.mean(dim=(2, 3)), pixels.std(dim=(2, 3))], 1)


def test_crop_provenance_goes_to_the_manifest_with_opaque_ids_only(
    pipe, slide_model, tmp_path, make_layout, draw
):
    out = tmp_path / "slide.tif"
    generate_slide(pipe, make_layout(40, 40), out, crops="region", progress=False)
    manifest = json.loads(output_paths(out)["manifest"].read_text())
    crops = [c for w in manifest["crop_provenance"] for c in w["crops"].values() if c]
    assert crops and {c["source"] for c in crops} == {"bank"}
    assert all(
        set(c)
        <= {
            "source",
            "slide_id",
            "x",
            "y",
            "size",
            "mpp",
            "placed_x",
            "placed_y",
            "placed_size",
            "empty",
        }
        for c in crops
    )
    assert manifest["associated_images"] == []
    text = "".join(p.read_text(errors="ignore") for p in tmp_path.glob("slide.*json*"))
    assert str(slide_model) not in text and "bank.safetensors" not in text
    with tifffile.TiffFile(out) as tif:
        assert all("ImageDescription" not in page.tags for page in tif.pages)
    # one crop per connected region: every window whose largest gland region is r uses r's crop
    from htd_plugins.slide_synthesis.conditions import connected_regions

    regions, classes = connected_regions(draw.blob_mask(40, 40), 2)
    side = manifest["windows"]["side_px"]
    crop_of: dict[int, set] = {}
    for w in manifest["crop_provenance"]:
        ids = regions[w["y"] : w["y"] + side, w["x"] : w["x"] + side].ravel()
        counts = np.bincount(ids, minlength=len(classes)) * (classes == 1)
        if counts.max() > 0 and w["crops"].get("gland"):
            c = w["crops"]["gland"]
            crop_of.setdefault(int(counts.argmax()), set()).add((c["slide_id"], c["x"], c["y"]))
    assert crop_of and all(len(v) == 1 for v in crop_of.values())


def test_cli_from_geojson_with_crop_bank(slide_model, tmp_path, builtin_manager, draw):
    shapes = [("gland", draw.square(10, 10, 20)), ("gland", draw.square(50, 30, 24))]
    geo = draw.write_geojson(tmp_path / "drawn.geojson", shapes)
    out = tmp_path / "cli.tif"
    args = ["generate-slide", str(slide_model / "model"), "--map", str(geo), "--out", str(out),
            "--mpp", str(MPP), "--size", "90", "70", "--fill", "stroma",
            "--crop-bank", str(slide_model / "bank.safetensors"), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert level0(out).shape == (70, 90, 3)
    mask = tifffile.imread(output_paths(out)["label_mask"])
    assert mask[20, 20] == 1 and mask[5, 5] == 0 and mask[40, 60] == 1


def test_htd_sample_samples_the_synthetic_slide_like_a_real_one(
    pipe, tmp_path, builtin_manager, make_layout
):
    from htd_core.dataset import Dataset

    out = tmp_path / "slide.tif"
    generate_slide(pipe, make_layout(96, 96, seed=1), out, progress=False)
    paths = output_paths(out)
    data = tmp_path / "patches"
    args = ["sample", "heterogeneous", "--out", str(data), "-o", f"slide={out}",
            "-o", f"annotations={paths['geojson']}", "-o", "classes=[stroma, gland]",
            "-o", "patch_size=16", "-o", f"mpp={MPP}", "-o", "tissue=none", "-o", "cell_px=1", "--limit", "5"]  # fmt: skip
    assert main(args) == 0
    dataset = Dataset(data)
    assert len(dataset) == 5
    image = level0(out)
    mask = tifffile.imread(paths["label_mask"])
    for i in range(len(dataset)):
        s = dataset[i]
        x, y = int(s.meta["x"]), int(s.meta["y"])
        assert np.abs(s.image.astype(int) - image[y : y + 16, x : x + 16]).max() <= 1
        assert (s.mask == mask[y : y + 16, x : x + 16]).mean() > 0.9
        assert len(np.unique(s.mask)) == 2  # heterogeneous: both classes
