"""Every bad input the CLI is tested against, in one table (issue 12: bad input never costs
data and never hides).

Each row runs ``htd_core.cli.main([...])`` in a fresh folder and asserts: exit 2, no
traceback, one ``htd <verb>: error: ...`` line that names the input, and that the folder is
byte-for-byte as it was before (nothing left behind, nothing of the user's changed). The
second table holds inputs that are accepted with a warning naming them (exit 0).
``pytest tests/test_bad_inputs.py -v`` prints both tables with their outcomes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htd_core.cli import main
from htd_core.plugins import PluginManager, set_plugin_manager

# -- inputs, built in a fresh folder ---------------------------------------------------------


def tiles(root: Path, sizes=(32, 32), grey: bool = False) -> Path:
    """A tile folder: H&E-pink images (or grey ones) with two-class masks."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, side in enumerate(sizes):
        image = np.clip(rng.normal((200, 110, 170), 12, (side, side, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((side, side), np.uint8)
        mask[:, side // 2 :] = 1
        Image.fromarray(image[..., 0] if grey else image).save(root / "images" / f"t{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"t{i}.png")
    return root


def slide(path: Path, tissue: bool = True) -> Path:
    """A 256 x 256 plain-image slide: glass, with a pink tissue block (64-192) when ``tissue``."""
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(243, 2, (256, 256, 3)), 0, 255).astype(np.uint8)
    if tissue:
        block = rng.normal((200, 110, 170), 12, (128, 128, 3))
        image[64:192, 64:192] = np.clip(block, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def painted_mask(path: Path) -> Path:
    """A label mask painted in colours: tumour red (left), stroma green (right)."""
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)
    rgb[:, 32:] = (0, 255, 0)
    Image.fromarray(rgb).save(path)
    return path


def qupath(path: Path, unclassified_around: bool = True) -> Path:
    def poly(x0, y0, x1, y1, name=None):
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        props = {"classification": {"name": name}} if name else {"objectType": "annotation"}
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": props}  # fmt: skip

    feats = [poly(64, 64, 128, 192, "tumor"), poly(128, 64, 192, 192, "stroma")]
    if unclassified_around:
        feats.insert(0, poly(48, 48, 208, 208))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def codes(path: Path, shape: tuple[int, int] = (64, 64)) -> Path:
    """A two-code label mask (0 left, 1 right) of (height, width) ``shape``."""
    mask = np.zeros(shape, np.uint8)
    mask[:, shape[1] // 2 :] = 1
    Image.fromarray(mask).save(path)
    return path


def half_mask(root: Path, i: int) -> Path:
    """Tile ``i``'s mask replaced by one of half its image's size."""
    mask = root / "masks" / f"t{i}.png"
    side = Image.open(mask).size[0] // 2
    Image.fromarray(np.zeros((side, side), np.uint8)).save(mask)
    return root


def masks(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """Mask PNGs m0.png, m1.png... of (height, width) ``sizes``, all class 0."""
    folder.mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w), np.uint8)).save(folder / f"m{i}.png")
    return folder


def dataset(root: Path, names: list[str]) -> Path:
    """A tile folder made an htd dataset (manifest.csv + classes.json of ``names``)."""
    tiles(root)
    rows = [f"images/t{i}.png,masks/t{i}.png" for i in range(2)]
    (root / "manifest.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
    (root / "classes.json").write_text(json.dumps({"names": names}))
    return root


def config(
    path: Path,
    builders: str = "[semantic_map, crop]",
    backbone: str = "{name: controlnet_ldm, preset: tiny}",
) -> Path:
    path.write_text(
        f"sampler: {{name: tiles, root: {path.parent / 'tiles'}, classes: [a, b]}}\n"
        f"condition_builders: {builders}\nbackbone: {backbone}\n"
        "fit: {steps: 1, vae_steps: 1, batch_size: 2, progress: false, tensorboard: false}\n"
    )
    return path


def shard_folder(root: Path, damage: str | None = None) -> Path:
    """Shards of 2 samples (4 samples, classes a and b); shard 1 missing or truncated."""
    from htd_core.shard_writer import ShardWriter
    from htd_core.types import ClassMap, TissueSample

    rng, classes = np.random.default_rng(0), ClassMap(("a", "b"))
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 1
    with ShardWriter(root, classes, 2) as writer:
        for i in range(4):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            writer.write(TissueSample(image, mask, classes, {"slide_id": f"s{i}"}))
    shard = root / "shard-000001.tar"
    if damage == "missing":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:1500])
    elif damage == "no index":
        (root / "shards.json").unlink()
    return root


def store(root: Path, nan_rows: tuple[int, ...] = (4,), n: int = 60) -> Path:
    """An embedding store of one slide (n x 8 float16 rows), NaN in ``nan_rows``."""
    from htd_plugins.discovery.store import EmbeddingStore

    rng = np.random.default_rng(2)
    EmbeddingStore(root, {"encoder": "tiny", "weights_id": "w", "embed_dim": 8,
                          "read_mpp": 4.0, "patch_size": 16})  # fmt: skip
    folder = root / "slides" / "0123456789abcdef"
    folder.mkdir(parents=True)
    emb = np.concatenate([rng.normal(c, 0.1, (n // 3, 8)) for c in (0, 3, 6)]).astype(np.float16)
    emb[list(nan_rows)] = np.nan
    emb.tofile(folder / "embeddings.f16")
    np.save(folder / "coords.npy", np.stack(np.divmod(np.arange(len(emb)), 10), 1).astype("int32"))
    meta = {"slide_id": folder.name, "n_patches": len(emb), "embed_dim": 8, "complete": True}
    (folder / "meta.json").write_text(json.dumps(meta))
    return root


def clustering(root: Path, tmp: Path) -> Path:
    """A clustering of a clean copy of the store (the phenotypes maps would use)."""
    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.kmeans import KMeansOptions

    clean = store(tmp / "clean-store", nan_rows=())
    opts = KMeansOptions(n_phenotypes=3, coarse_k=2, min_cluster_size=2)
    cluster_stores([clean], root, levels=(2, 3), options=opts, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny controlnet_ldm (semantic_map + crop) saved as a pipeline folder."""
    from htd_core import Pipeline
    from htd_core.testing import synthetic_sample

    manager = PluginManager(autoload=True, disabled=set())
    previous = set_plugin_manager(manager)
    try:
        pipe = Pipeline(
            condition_builders=["semantic_map", {"name": "crop", "fixed_size": 6, "min_size": 2}],
            backbone={"name": "controlnet_ldm", "preset": "tiny"},
            stage_options={"generate": {"num_inference_steps": 1}},
        )
        samples = [synthetic_sample(16, seed=s) for s in range(2)]
        pipe.fit(samples, steps=1, vae_steps=1, batch_size=2, progress=False, tensorboard=False)
        folder = tmp_path_factory.mktemp("model") / "model"
        pipe.save_pretrained(folder)
    finally:
        set_plugin_manager(previous)
    return folder


# -- the tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bad input: ``argv(tmp, ctx)`` builds it; the error line must match ``message``
    (formatted with ``tmp``), which names the input."""

    id: str
    argv: Callable[[Path, dict], list[str]]
    message: str
    disabled: frozenset[str] = frozenset()
    unwritable: bool = False
    needs_model: bool = False


def _users_folder(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    (tmp / "out" / "important.txt").write_text("the user's notes")
    return tmp / "out"


def _file(tmp: Path) -> Path:
    (tmp / "out").write_text("the user's file")
    return tmp / "out"


def _empty(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir()
    return tmp / name


EVAL = ["--classes", "a,b", "--evaluators", "deeplabv3plus"]
EMBED = ["--encoder", "inception_fid", "--mpp", "4", "--patch-size", "16", "--no-progress"]

BAD = [
    # 1. output paths: never destroy, always check before the expensive work
    Case("train-vae: OUT holds a user's file",
         lambda t, c: ["train-vae", str(tiles(t / "tiles")), "--out", str(_users_folder(t)), "--preset", "tiny", "--steps", "1"],
         r"--out {tmp}/out already holds files htd did not write \(important.txt\)"),
    Case("train-vae: --finetune names no pretrained TAEF2",
         lambda t, c: ["train-vae", str(tiles(t / "tiles")), "--out", str(t / "new"), "--preset", "tiny", "--finetune", str(t)],
         r"--finetune {tmp}: give the folder of a pretrained TAEF2 autoencoder"),
    Case("train-vae: OUT is a file",
         lambda t, c: ["train-vae", str(tiles(t / "tiles")), "--out", str(_file(t)), "--preset", "tiny"],
         r"--out {tmp}/out is a file: htd .* never replaces a file"),
    Case("sample: OUTPUT is a file",
         lambda t, c: ["sample", "tiles", "--out", str(_file(t)), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, b]"],
         r"--out {tmp}/out is a file"),
    Case("sample: OUTPUT holds a user's file",
         lambda t, c: ["sample", "tiles", "--out", str(_users_folder(t)), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, b]"],
         r"--out {tmp}/out already holds files htd did not write \(important.txt\)"),
    Case("sample: OUTPUT folder not writable",
         lambda t, c: ["sample", "tiles", "--out", str(_empty(t, "ro")), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, b]"],
         r"--out {tmp}/ro is not writable", unwritable=True),
    Case("generate: OUTPUT is a file (before loading the model)",
         lambda t, c: ["generate", str(t / "no-model"), "--out", str(_file(t)), "--masks", str(t)],
         r"--out {tmp}/out is a file"),
    Case("generate: --masks without a crop bank (OUT not created)",
         lambda t, c: ["generate", str(c["model"]), "--out", str(t / "syn"), "--masks", str(tiles(t / "tiles", (16, 16)) / "masks")],
         r"class '\w+' has no crop: --masks {tmp}/tiles/masks gives no images to cut crops from, and no --crop-bank was given: give --crop-bank FILE \(build one .*`htd crop-bank DATA --out FILE`\)", needs_model=True),
    Case("generate: MODEL is not a saved pipeline",
         lambda t, c: ["generate", str(_empty(t, "model")), "--out", str(t / "syn"), "--masks", str(t)],
         r"{tmp}/model is not a saved pipeline"),
    Case("evaluate: --out is a file",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles")), "--synthetic", f"s={t / 'tiles'}", "--out", str(_file(t)), *EVAL],
         r"--out {tmp}/out is a file"),
    Case("evaluate: --out holds a user's file",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles")), "--synthetic", f"s={t / 'tiles'}", "--out", str(_users_folder(t)), *EVAL],
         r"--out {tmp}/out already holds files htd did not write \(important.txt\)"),
    Case("evaluate: deeplabv3plus.input_size=40 (smp wants x16), before any feature",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles")), "--synthetic", f"s={t / 'tiles'}", "--out", str(t / "ev"), *EVAL, "-o", "deeplabv3plus.input_size=40"],
         r"deeplabv3plus: input_size=40 must be a multiple of 16"),
    Case("evaluate: one real source image, met by DeepLabv3+ after --out was started (nothing left)",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles", (32,))), "--synthetic", f"s={t / 'tiles'}", "--out", str(t / "ev"), *EVAL],
         r"deeplabv3plus: real set: cannot split 1 items by source: .*at least two .*--real-test"),
    Case("evaluate: no --synthetic set",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles")), "--out", str(t / "ev"), *EVAL],
         r"give at least one --synthetic"),
    Case("train: --out is a file (before training the autoencoder)",
         lambda t, c: ["train", str(config((tiles(t / "tiles").parent) / "p.yaml")), "--out", str(_file(t))],
         r"--out {tmp}/out is a file"),
    Case("train: samples smaller than the model's patches, met inside fit (nothing left)",
         lambda t, c: ["train", str(config(tiles(t / "tiles", (16, 16)).parent / "p.yaml", backbone="{name: controlnet_ldm, preset: tiny, image_size: 32}")),
                       "--out", str(t / "run")],
         r"training sample 0 is 16x16 px, smaller than the model's 32 px"),
    Case("train: config without a backbone",
         lambda t, c: ["train", str(_yaml(t / "p.yaml", "sampler: tiles\n")), "--out", str(t / "run")],
         r"{tmp}/p.yaml: `htd train` needs a 'backbone' section"),
    Case("discover embed: --out is a file",
         lambda t, c: ["discover", "embed", str(slide(t / "s.png")), "--out", str(_file(t)), *EMBED],
         r"--out {tmp}/out is a file"),
    Case("discover embed: an empty folder of slides",
         lambda t, c: ["discover", "embed", str(_empty(t, "slides")), "--out", str(t / "store"), *EMBED],
         r"no slide files in {tmp}/slides"),
    Case("discover embed: --shard 2/2",
         lambda t, c: ["discover", "embed", str(slide(t / "s.png")), "--out", str(t / "store"), "--shard", "2/2", *EMBED],
         r"shard 2/2 is invalid"),
    Case("discover embed: a --scheduler that does not answer (before --out, within the timeout)",
         lambda t, c: ["discover", "embed", str(slide(t / "s.png")), "--out", str(t / "store"), "--scheduler", f"tcp://127.0.0.1:{_closed_port()}", "--connect-timeout", "1", *EMBED],
         r"no Dask scheduler answers at --scheduler tcp://127.0.0.1:\d+ within 1 s .*leave --scheduler out for a local cluster"),
    Case("discover embed: --scheduler with --engine process",
         lambda t, c: ["discover", "embed", str(slide(t / "s.png")), "--out", str(t / "store"), "--scheduler", "tcp://127.0.0.1:8786", "--engine", "process", *EMBED],
         r"--scheduler tcp://127.0.0.1:8786 needs --engine dask"),
    Case("discover cluster: NaN rows in the store (nothing written)",
         lambda t, c: ["discover", "cluster", "--store", str(store(t / "store", (4, 9))), "--out", str(t / "phen"), "--no-progress"],
         r"{tmp}/store/slides/0123456789abcdef/embeddings.f16 holds NaN or inf in 2 of 60 rows \(rows 4, 9\)"),
    Case("discover cluster: --out holds a user's file",
         lambda t, c: ["discover", "cluster", "--store", str(store(t / "store")), "--out", str(_users_folder(t))],
         r"--out {tmp}/out already holds files htd did not write"),
    Case("discover cluster: --levels 5,x",
         lambda t, c: ["discover", "cluster", "--store", str(store(t / "store")), "--out", str(t / "phen"), "--levels", "5,x"],
         r"--levels '5,x'"),
    Case("discover maps: NaN rows in the store (nothing written)",
         lambda t, c: ["discover", "maps", "--store", str(store(t / "store")), "--clustering", str(clustering(t / "phen", t)), "--out", str(t / "maps"), "--no-progress"],
         r"{tmp}/store/slides/0123456789abcdef/embeddings.f16 holds NaN or inf in 1 of 60 rows \(rows 4\)"),
    # 2. pixels
    Case("sample tiles: a 1 x 1 tile",
         lambda t, c: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles', (32, 1))}", "-o", "classes=[a, b]"],
         r"tile {tmp}/tiles/images/t1.png is 1 x 1 px, smaller than min_size=16"),
    Case("sample tiles: tiles smaller than patch_size",
         lambda t, c: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles', (32, 20))}", "-o", "classes=[a, b]", "-o", "patch_size=24"],
         r"t1.png is 20 x 20 px, smaller than patch_size=24"),
    # 3. labels
    Case("sample: label mask painted in RGB colours",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={slide(t / 's.png')}", "-o", "slide_mpp=0.5",
                       "-o", f"label_mask={painted_mask(t / 'm.png')}", "-o", "classes=[tumor, stroma]", "-o", "patch_size=64"],
         r"label mask {tmp}/m.png is painted in colours \(\(0, 255, 0\) x 2048 px, \(255, 0, 0\) x 2048 px\)"),
    Case("sample: QuPath export with an unclassified region",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={slide(t / 's.png')}", "-o", "slide_mpp=0.5",
                       "-o", f"annotations={qupath(t / 'a.geojson')}", "-o", "classes=[tumor, stroma]", "-o", "patch_size=64"],
         r"{tmp}/a.geojson has labels '<unclassified>' \(1\).*unknown_labels='ignore'"),
    Case("sample: a slide without tissue gives 0 samples (why)",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={slide(t / 's.png', tissue=False)}", "-o", "slide_mpp=0.5",
                       "-o", "classes=[tumor, stroma]", "-o", "patch_size=64"],
         r"0 samples: 49 windows of 64 px scanned on 1 slide\(s\); 49 had less than min_labeled=0.5"),
    Case("sample: windows no rule accepts give 0 samples (why)",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={slide(t / 's.png')}", "-o", "slide_mpp=0.5",
                       "-o", f"annotations={qupath(t / 'a.geojson', False)}", "-o", "classes=[tumor, stroma]", "-o", "patch_size=64",
                       "-o", "min_frac=0.45", "-o", "max_frac=0.46"],
         r"0 samples: 49 windows .* were rejected by CompositionRule\(mode='heterogeneous', min_frac=0.45"),
    Case("sample tiles: a rule no tile passes gives 0 samples (why)",
         lambda t, c: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, b]",
                       "-o", "rule=homogeneous", "-o", "homogeneous_frac=0.99"],
         r"0 samples: 2 tile\(s\) of {tmp}/tiles read \(taken whole\); every window was rejected by CompositionRule\(mode='homogeneous'"),
    Case("sample: a folder given as the slide",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={_empty(t, 'slides')}", "-o", "slide_mpp=0.5",
                       "-o", "classes=[tumor, stroma]"],
         r"slide {tmp}/slides is a folder, not a slide file"),
    Case("sample: unknown sampler name",
         lambda t, c: ["sample", "heterogenous", "--out", str(t / "ds")],
         r"unknown patch sampler 'heterogenous'. Did you mean 'heterogeneous'"),
    # 3b. every input's header before the first write (issue 27)
    Case("sample tiles: a mask half its image's size (nothing written)",
         lambda t, c: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={half_mask(tiles(t / 'tiles'), 1)}", "-o", "classes=[a, b]"],
         r"mask {tmp}/tiles/masks/t1.png is 16 x 16 px but its image {tmp}/tiles/images/t1.png is 32 x 32 px: .*give a 32 x 32 px mask"),
    Case("sample: the second slide's label mask is not of its slide (nothing written)",
         lambda t, c: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide=[{slide(t / 's1.png')}, {slide(t / 's2.png')}]",
                       "-o", "slide_mpp=0.5", "-o", f"label_mask=[{codes(t / 'm1.png')}, {codes(t / 'm2.png', (16, 64))}]",
                       "-o", "classes=[tumor, stroma]", "-o", "patch_size=64", "-o", "min_frac=0.0"],
         r"label mask {tmp}/m2.png is 64 x 16 \(aspect 4.000\) but the slide is 256 x 256"),
    Case("generate --masks: one 30x30 layout among 24x40 ones (before OUTPUT is written)",
         lambda t, c: ["generate", str(c["model"]), "--out", str(t / "syn"), "--masks", str(masks(t / "m", [(24, 40), (24, 40), (30, 30), (24, 40)])), "--unconditional"],
         r"layout {tmp}/m/m2.png is 30x30 px, but this model generates sides that are multiples of 4 px: crop it to 28x28 or pad it to 32x32 px",
         needs_model=True),
    Case("generate --masks: two sizes in one batch name a file of each",
         lambda t, c: ["generate", str(c["model"]), "--out", str(t / "syn"), "--masks", str(masks(t / "m", [(16, 16), (16, 16), (24, 24)])), "--unconditional"],
         r"layouts {tmp}/m/m0.png \(16x16 px\) and {tmp}/m/m2.png \(24x24 px\) fall in one batch of \d+.*--batch-size 1",
         needs_model=True),
    # 4. class lists: a duplicate or another class list, naming the file or option
    Case("evaluate: --classes gland,gland (before DeepLabv3+ trains)",
         lambda t, c: ["evaluate", "--real", str(tiles(t / "tiles")), "--synthetic", f"s={t / 'tiles'}", "--out", str(t / "ev"),
                       "--classes", "gland,gland", "--evaluators", "deeplabv3plus"],
         r"--classes 'gland,gland' names class 'gland' twice"),
    Case("sample tiles: classes=[a, a]",
         lambda t, c: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, a]"],
         r"classes=\['a', 'a'\] names class 'a' twice"),
    Case("evaluate: a dataset whose classes.json names a class twice",
         lambda t, c: ["evaluate", "--real", str(dataset(t / "ds", ["a", "a"])), "--synthetic", f"s={tiles(t / 'tiles')}",
                       "--out", str(t / "ev"), *EVAL],
         r"{tmp}/ds/classes.json: ClassMap.names names class 'a' twice"),
    Case("evaluate: a synthetic dataset of another class list than the real one (DeepLabv3+)",
         lambda t, c: ["evaluate", "--real", str(dataset(t / "real", ["a", "b"])), "--synthetic", f"s={dataset(t / 'syn', ['x', 'y'])}",
                       "--out", str(t / "ev"), *EVAL],
         r"synthetic set 's': {tmp}/syn/classes.json lists classes \['x', 'y'\] but the real set's {tmp}/real/classes.json lists \['a', 'b'\]"),
    Case("sample tiles: a dataset whose classes.json names a class twice",
         lambda t, c: ["sample", "tiles", "--out", str(t / "out"), "-o", f"root={dataset(t / 'ds', ['a', 'a'])}"],
         r"{tmp}/ds/classes.json: ClassMap.names names class 'a' twice"),
    Case("sample tiles: classes in another order than the dataset's classes.json",
         lambda t, c: ["sample", "tiles", "--out", str(t / "out"), "-o", f"root={dataset(t / 'ds', ['a', 'b'])}", "-o", "classes=[b, a]"],
         r"classes=\['b', 'a'\] names the classes of {tmp}/ds/classes.json \(\['a', 'b'\]\) in another order"),
    Case("generate --masks: the masks' dataset has another class list (classes.json)",
         lambda t, c: ["generate", str(c["model"]), "--out", str(t / "syn"), "--masks", str(dataset(t / "ds", ["x", "y"]) / "masks"), "--unconditional"],
         r"--masks {tmp}/ds/masks: {tmp}/ds/classes.json lists classes \['x', 'y'\], but the model was trained on",
         needs_model=True),
    Case("train --data SHARDS: a shard is missing (before any work)",
         lambda t, c: ["train", str(config(t / "p.yaml")), "--data", str(shard_folder(t / "sh", "missing")), "--out", str(t / "run")],
         r"{tmp}/sh/shard-000001.tar is missing: .* pass --skip-bad-shards to read the other shards"),
    Case("train --data SHARDS: a shard is truncated (before any work)",
         lambda t, c: ["train", str(config(t / "p.yaml")), "--data", str(shard_folder(t / "sh", "truncated")), "--out", str(t / "run")],
         r"{tmp}/sh/shard-000001.tar is truncated \(1500 bytes, the index says \d+\)"),
    Case("train --data: tar shards without their index (shards.json)",
         lambda t, c: ["train", str(config(t / "p.yaml")), "--data", str(shard_folder(t / "sh", "no index")), "--out", str(t / "run")],
         r"--data {tmp}/sh holds .tar files but no shards.json \(the shard index\): write the shards with `htd sample"),
    Case("train --data: a file, not a folder",
         lambda t, c: ["train", str(config(t / "p.yaml")), "--data", str(shard_folder(t / "sh") / "shards.json"), "--out", str(t / "run")],
         r"--data {tmp}/sh/shards.json is a file: give the folder that holds it"),
    Case("train: --skip-bad-shards without shards",
         lambda t, c: ["train", str(config(tiles(t / "tiles").parent / "p.yaml")), "--out", str(t / "run"), "--skip-bad-shards"],
         r"--skip-bad-shards applies to --data SHARDS"),
    # 5. plugins
    Case("train: crop blocked by HTD_DISABLED_PLUGINS",
         lambda t, c: ["train", str(config((tiles(t / "tiles").parent) / "p.yaml")), "--out", str(t / "run")],
         r"condition_builders\[1\]: condition builder 'crop' is blocked by HTD_DISABLED_PLUGINS",
         disabled=frozenset({"crop"})),
]  # fmt: skip


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``root``: content hash (files) and permission bits."""
    out = {}
    for p in sorted(root.rglob("*")):
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[p.relative_to(root).as_posix()] = (digest, os.stat(p).st_mode)
    return out


@pytest.fixture
def manager_for():
    """Installs a manager with the given blocked plugins; restores the previous one."""
    previous = []

    def install(disabled):
        previous.append(set_plugin_manager(PluginManager(disabled=set(disabled))))

    yield install
    for p in previous:
        set_plugin_manager(p)


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_exits_2_names_it_and_leaves_everything_as_it_was(
    case, tmp_path, capsys, monkeypatch, manager_for, request
):
    context = {"model": request.getfixturevalue("tiny_model")} if case.needs_model else {}
    manager_for(case.disabled)
    argv = case.argv(tmp_path, context)
    if case.unwritable:  # as a user without write permission (the tests may run as root)
        monkeypatch.setattr("htd_core.outputs.writable", lambda folder: False)
    before = snapshot(tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings():  # warnings are the other table's business
        warnings.simplefilter("ignore")
        status = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert status == 2, err
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith(f"htd {argv[0]}: error: ")
    assert re.search(case.message.format(tmp=re.escape(str(tmp_path))), errors[0]), errors[0]
    assert snapshot(tmp_path) == before  # nothing left behind, nothing of the user's changed


@dataclass(frozen=True)
class Warned:
    """An input that is used, with a warning that names it (exit 0)."""

    id: str
    argv: Callable[[Path], list[str]]
    warning: str
    disabled: frozenset[str] = frozenset()


WARNED = [
    Warned("sample tiles: greyscale images (not H&E)",
           lambda t: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles', grey=True)}", "-o", "classes=[a, b]"],
           r"t0.png is a greyscale image \(grey\): greyscale is not H&E"),
    Warned("sample tiles: small tiles skipped on request",
           lambda t: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles', (32, 8))}", "-o", "classes=[a, b]", "-o", "small_tiles=skip"],
           r"1 tile\(s\) .* smaller than 16 px and were skipped .*\['t1.png'\]"),
    Warned("sample: a class with no region anywhere (necrosis)",
           lambda t: ["sample", "tiles", "--out", str(t / "ds"), "-o", f"root={tiles(t / 'tiles')}", "-o", "classes=[a, b, necrosis]"],
           r"class 'necrosis' has no region in any of the 2 samples"),
    Warned("sample: lossy JPEG label mask",
           lambda t: ["sample", "heterogeneous", "--out", str(t / "ds"), "-o", f"slide={slide(t / 's.png')}", "-o", "slide_mpp=0.5",
                      "-o", f"label_mask={_jpeg_mask(t / 'm.jpg')}", "-o", "classes=[tumor, stroma]", "-o", "patch_size=64"],
           r"label mask {tmp}/m.jpg is a lossy JPEG"),
    Warned("train --data SHARDS --skip-bad-shards: a missing shard is left out",
           lambda t: ["train", str(config(t / "p.yaml")), "--data", str(shard_folder(t / "sh", "missing")), "--out", str(t / "run"), "--skip-bad-shards"],
           r"{tmp}/sh/shard-000001.tar is missing: skipped \(--skip-bad-shards\)"),
    Warned("plugins: unknown name in HTD_DISABLED_PLUGINS",
           lambda t: ["plugins"], r"'crpo', which is no installed plugin.*Did you mean 'crop'",
           disabled=frozenset({"crpo"})),
]  # fmt: skip


def _jpeg_mask(path: Path) -> Path:
    codes = np.zeros((64, 64), np.uint8)
    codes[:, 32:] = 1
    Image.fromarray(codes).save(path, quality=95)
    return path


@pytest.mark.parametrize("case", WARNED, ids=[c.id for c in WARNED])
def test_suspicious_input_is_used_with_a_warning_naming_it(case, tmp_path, manager_for, capsys):
    manager_for(case.disabled)
    argv = case.argv(tmp_path)
    with pytest.warns(UserWarning) as caught:
        assert main(argv) == 0, capsys.readouterr().err
    pattern = case.warning.format(tmp=re.escape(str(tmp_path)))
    assert any(re.search(pattern, str(w.message)) for w in caught), [str(w.message) for w in caught]


# -- two runs into one output ----------------------------------------------------------------


def test_a_second_run_into_a_folder_being_written_refuses_and_the_first_completes(
    tiny_model, tmp_path, manager_for, monkeypatch, capsys
):
    """Issue 27: two `htd generate` into one folder gave 29 rows for 16 layouts."""
    import subprocess
    import sys

    from htd_core.dataset import Dataset, DatasetWriter
    from htd_core.testing import synthetic_sample

    manager_for(())
    masks = tmp_path / "masks"
    masks.mkdir()
    for s in range(3):
        Image.fromarray(synthetic_sample(16, seed=s).mask).save(masks / f"m{s}.png")
    out = tmp_path / "syn"
    argv = [
        "generate",
        str(tiny_model),
        "--out",
        str(out),
        "--masks",
        str(masks),
        "--unconditional",
    ]
    second: dict = {}
    write = DatasetWriter.write

    def write_then_start_a_second_run(self, sample):
        if not second:  # while the first run holds the folder, with a sample written
            root = str(Path(__file__).resolve().parents[1])
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
            }
            run = subprocess.run([sys.executable, "-m", "htd_core.cli", *argv], env=env,
                                 capture_output=True, text=True, timeout=600)  # fmt: skip
            second.update(status=run.returncode, err=run.stderr, rows=len(Dataset(out)))
        return write(self, sample)

    monkeypatch.setattr(DatasetWriter, "write", write_then_start_a_second_run)
    assert main(argv) == 0, capsys.readouterr().err
    errors = [line for line in second["err"].splitlines() if ": error: " in line]
    assert second["status"] == 2 and "Traceback" not in second["err"], second["err"]
    assert len(errors) == 1 and errors[0].startswith(
        f"htd generate: error: --out {out} is being written by pid {os.getpid()} on "
    ), second["err"]
    assert len(Dataset(out)) == 3 and second["rows"] == 0  # the second wrote nothing
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # lock gone


# -- numbers: every numeric option of every verb is checked at parse time ---------------------


def _numeric_options() -> list[tuple[list[str], object]]:
    """(the verb and stage, the action) of every option of every verb that takes a number."""
    import argparse

    from htd_core.cli import build_parser

    found = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*prefix, name])
            elif action.option_strings and action.type is not None:
                found.append((prefix, action))

    walk(build_parser(), [])
    return found


NUMERIC = [(p, a) for p, a in _numeric_options() if getattr(a.type, "__name__", "").startswith(("integer", "number", "int", "float"))]  # fmt: skip


def test_every_numeric_option_has_a_checked_range():
    """A bare ``type=int`` or ``type=float`` accepts 0, -1, nan, inf: each option says its range."""
    bare = [
        f"htd {' '.join(p)} {a.option_strings[-1]}" for p, a in NUMERIC if a.type in (int, float)
    ]
    assert bare == []
    assert len(NUMERIC) > 40  # the walk found the verbs' options (and their stages')


@pytest.mark.parametrize(
    ("prefix", "action"), NUMERIC, ids=[f"{' '.join(p)} {a.option_strings[-1]}" for p, a in NUMERIC]
)
def test_a_number_out_of_range_is_one_line_at_parse_time(prefix, action, capsys):
    """0 never silently means "the default": the value below an option's range (or nan) is
    refused before any work, in one line naming the option and its range, exit 2."""
    name = action.type.__name__  # "integer >= 1", "number > 0 and < 1", ...
    low = re.match(r"integer >= (-?\d+)", name)
    bad = str(int(low.group(1)) - 1) if low else "nan"
    option = action.option_strings[-1]
    with pytest.raises(SystemExit) as exc:
        main([*prefix, option, *[bad] * (action.nargs if isinstance(action.nargs, int) else 1)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert f"argument {option}" in err[0] and name in err[0] and "Traceback" not in err[0], err[0]


# -- a full disk: one line naming the folder, nothing lost, the rerun resumes -----------------


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs at ``tmp_path/disk`` (grown with ``grow(size)``); skipped where this
    process may not mount one (mounting needs root or CAP_SYS_ADMIN)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)],
                           capture_output=True, text=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mount.stderr.strip() or 'no mount'})")

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)

    yield disk, grow
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_naming_the_folder_and_the_rerun_resumes_identically(
    small_disk, tmp_path, manager_for, capsys
):
    disk, grow = small_disk
    manager_for(())
    root = tiles(tmp_path / "tiles", sizes=(96,) * 6)
    argv = [
        "sample",
        "tiles",
        "--out",
        str(disk / "ds"),
        "-o",
        f"root={root}",
        "-o",
        "classes=[a, b]",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert status == 2 and "Traceback" not in err and len(errors) == 1, err
    assert re.search(rf"htd sample: error: no space left on device writing {re.escape(str(disk))}"
                     r"/ds \(\d+(\.\d)? (B|KiB) free there; about \d+\.\d KiB more needed "
                     r"for the remaining [1-5] sample\(s\)\)", errors[0]), errors[0]  # fmt: skip
    assert 0 < len(list((disk / "ds" / "images").iterdir())) < 6  # written whole: kept
    grow("8m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
        assert main([*argv[:3], str(tmp_path / "fresh"), *argv[4:]]) == 0
    for name in ("manifest.csv", *(f"images/{i:06d}.png" for i in range(6))):
        assert (disk / "ds" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name


def test_a_full_disk_met_by_a_library_is_one_line_too(tmp_path, manager_for, capsys, monkeypatch):
    """ENOSPC raised outside htd's atomic writers (a library writing its own file): the CLI
    names the output folder it holds, and a new output without a sample is removed whole."""
    import errno

    from htd_core.dataset import DatasetWriter

    manager_for(())

    def full(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DatasetWriter, "write", full)
    root = tiles(tmp_path / "tiles")
    before = snapshot(tmp_path)
    status = main(
        [
            "sample",
            "tiles",
            "--out",
            str(tmp_path / "ds"),
            "-o",
            f"root={root}",
            "-o",
            "classes=[a, b]",
        ]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert status == 2 and "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith(
        f"htd sample: error: no space left on device writing {tmp_path}/ds ("
    )
    assert snapshot(tmp_path) == before  # nothing written: nothing left


def test_a_new_output_that_fails_before_its_first_sample_leaves_nothing(
    tiny_model, tmp_path, manager_for, monkeypatch, capsys
):
    """Issue 27: every failed run left an output folder with 0 rows."""
    from htd_core.errors import InputError

    manager_for(())
    layouts = masks(tmp_path / "m", [(16, 16)] * 2)

    def fails(*args, **kwargs):
        raise InputError("a failure met while generating")
        yield  # a generator, as the real one

    monkeypatch.setattr("htd_core.generation.generate_samples", fails)
    before = snapshot(tmp_path)
    argv = [
        "generate",
        str(tiny_model),
        "--out",
        str(tmp_path / "syn"),
        "--masks",
        str(layouts),
        "--unconditional",
    ]
    assert main(argv) == 2
    assert "a failure met while generating" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # no syn/ with classes.json and an empty manifest
