"""The code of README.md and docs/*.md runs: every ```python and ```bash block, on tiny settings.

Each block is listed in :data:`SPECS` by ``<file>#<index>`` with its first line (a moved or
edited block fails :func:`test_every_block_is_listed` until the table follows), and either
runs or is skipped with a stated reason (only blocks that need files users must supply, such
as gated encoder weights, or that start a server). A run may substitute text (``subs``: each
``old`` must still be in the block, so the docs cannot drift silently), e.g. the ``tiny``
preset for ``small`` and a few steps, and may define names a block assumes (``prelude``).

The blocks run in one workspace, in the order of :data:`DOCS`, as a reader would follow them
from the repository root (a doc selected on its own first runs the docs before it, whose
outputs it reads): ``WORK/repo`` is the current folder and ``WORK/shared/data`` (also
``$HTD_SHARED_DATA``) holds a small synthetic GlaS-like tile set plus links to the real
slides, CAMELYON and WSSS4LUAD tiles of the shared data when present; a command that needs
shared data that is absent is skipped and named. Bash lines are ``htd`` commands, run in
process (``htd_core.cli.main``) with ``HTD_THREADS=1``; python blocks of one file share a
namespace, like a notebook.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
#: The order a reader follows: the README's flow makes the datasets and model the docs reuse.
DOCS = [
    "README.md", "docs/sampling.md", "docs/backbones.md", "docs/conditioning.md",
    "docs/encoders.md", "docs/discovery.md", "docs/scale.md", "docs/evaluation.md", "docs/plugins.md",
    "docs/reader-study.md", "docs/slide-synthesis.md", "docs/results.md", "docs/architecture.md",
]  # fmt: skip
GATED = "needs the UNI weights file, which users download themselves (gated model)"
SERVER = "starts the reader-study web server, which runs until it is stopped"
DRAWN = "needs a layout the user draws (layout.geojson), none ships with htd"
TIMED = ("a timed benchmark for a quiet machine (minutes, GiB of data); "
         "tests/test_bench_scale.py runs it at its smallest size")  # fmt: skip
TRAIN_CLUSTER = ("needs several GPU machines; tests/htd_plugins/commands/test_train_shards.py "
                 "trains from shards under accelerate launch on 2 CPU processes")  # fmt: skip
DASK_CLUSTER = ("needs several machines and the gated UNI weights; tests/htd_plugins/discovery/"
                "test_engine.py runs the same client on a local Dask cluster")  # fmt: skip
CLUSTER = ("needs several GPU machines and the gated UNI weights; tests/htd_plugins/discovery/"
           "test_multiprocess.py runs embed under accelerate launch on 2 CPU processes")  # fmt: skip
TINY_FIT = ("max_minutes=5)", "max_minutes=5, steps=2, vae_steps=2, batch_size=2, progress=False)")
#: An encoder with real weights at a tenth of the FID Inception's cost (speed only).
FAST_ENCODER = "efficientnet_lite0"
DISCOVER_FAST = f"--encoder {FAST_ENCODER} --mpp 4 --patch-size 32 --workers 0"
#: Print each block's and command's time (HTD_DOCS_TIMES=1).
TIMES = bool(os.environ.get("HTD_DOCS_TIMES"))


@dataclass(frozen=True)
class Spec:
    """How the docs test treats one block."""

    first: str  # the block's first line, as written
    skip: str | None = None  # reason it does not run
    subs: tuple[tuple[str, str], ...] = ()  # (old, new): old must be in the block
    prelude: str = ""  # python run before the block, in its namespace
    append: tuple[tuple[str, str], ...] = ()  # (command prefix, extra arguments)


SPECS: dict[str, Spec] = {
    "README.md#0": Spec(
        "make demo",
        skip="`make demo` / `make test` run the whole demo and the whole suite (this test is "
        "part of `make test`)",
    ),
    "README.md#1": Spec("# 1. real 64 px patches"),
    "README.md#2": Spec(
        "python examples/readme_figure.py",
        skip="runs a script of examples/, not an htd command: tests/test_readme.py runs it on a "
        "tiny model",
    ),
    "README.md#3": Spec("htd evaluate --real out/train --real-test out/test --synthetic quick="),
    "README.md#4": Spec(
        "# 2. train 30 minutes",
        subs=(
            ("-o vae_steps=3000", "-o vae_steps=2"),
            (
                "--evaluators frechet,deeplabv3plus,privacy",
                "--evaluators frechet,deeplabv3plus,privacy -o deeplabv3plus.budget=tiny "
                f"--encoders {FAST_ENCODER}",
            ),
            ("--out runs/store --mpp 0.5", f"--out runs/store {DISCOVER_FAST}"),
            ("--out runs/student", "--out runs/student --epochs 1 --depth 1"),
        ),
    ),
    "README.md#5": Spec(
        "import htd_core", subs=(('"preset": "small"', '"preset": "tiny"'), TINY_FIT)
    ),
    "docs/sampling.md#0": Spec("# GlaS / CAMELYON / WSSS4LUAD tile folders"),
    "docs/sampling.md#1": Spec("# shard-000000.tar, shard-000001.tar, ... of 32 patches"),
    "docs/sampling.md#2": Spec(
        "# 2 nodes x 4 GPUs",
        skip="needs 2 machines of 4 GPUs; tests/htd_plugins/commands/test_train_shards.py runs "
        "`accelerate launch --num_processes 2` on CPU",
    ),
    "docs/backbones.md#0": Spec(
        "from htd_core import Pipeline",
        prelude="from htd_core.dataset import Dataset\n"
        "train_samples = list(Dataset('out/train'))\nlayouts = list(Dataset('out/test'))[:2]\n",
        subs=(
            ('"preset": "small"', '"preset": "tiny"'),
            ("steps=2000,", "steps=2, vae_steps=2, batch_size=2, progress=False,"),
            ("num_inference_steps=25)", "num_inference_steps=2)"),
        ),
    ),
    # options only: the folder is read by fit (tests/htd_plugins/backbones/test_taef2.py)
    "docs/backbones.md#1": Spec("from htd_core import create"),
    "docs/backbones.md#2": Spec(
        "htd train-vae out/train",
        subs=(("--preset small --steps 2000", "--preset tiny --steps 2"),),
    ),
    "docs/backbones.md#3": Spec("htd train examples/pipeline.yaml --data out/train"),
    "docs/backbones.md#4": Spec(
        "import torch", subs=(("num_inference_steps=25", "num_inference_steps=2"),)
    ),
    "docs/conditioning.md#0": Spec(
        "import htd_core",
        prelude="from htd_core.dataset import Dataset\nreal_samples = list(Dataset('out/train'))\n"
        "sample = real_samples[0]\nclass_map = sample.class_map\nuser_mask = real_samples[1].mask\n",
    ),
    "docs/conditioning.md#1": Spec("import htd_core"),
    "docs/conditioning.md#2": Spec("from htd_core import Pipeline"),
    "docs/conditioning.md#3": Spec("emb = htd_core.create(", skip=GATED),
    "docs/conditioning.md#4": Spec("import htd_core"),
    "docs/encoders.md#0": Spec("import htd_core", skip=GATED),
    "docs/discovery.md#0": Spec(
        "htd discover embed",
        subs=(
            ("--encoder inception_fid --mpp 0.5 --patch-size 224", DISCOVER_FAST),
            ("--out runs/student", "--out runs/student --epochs 1 --depth 1"),
        ),
    ),
    "docs/discovery.md#1": Spec(
        "htd discover embed ../shared/data/slides/CMU-1-Small-Region.svs --out runs/store_dask",
        subs=(
            ("--encoder inception_fid --mpp 0.5 --patch-size 224", DISCOVER_FAST),
            ("--local-workers 2", "--local-workers 1"),
        ),
    ),
    "docs/discovery.md#2": Spec(
        "from htd_plugins.discovery import",
        subs=(
            (
                '"runs/demo_discovery")',
                f'"runs/demo_discovery", stride=200, patch_size=200, encoder="{FAST_ENCODER}")',
            ),
        ),
    ),
    "docs/scale.md#0": Spec("python benchmarks/bench_kmeans_faiss.py", skip=TIMED),
    "docs/scale.md#1": Spec("python benchmarks/tcga_scale_plan.py", skip=TIMED),
    "docs/scale.md#2": Spec("python benchmarks/bench_shards.py read", skip=TIMED),
    "docs/scale.md#3": Spec("dask scheduler", skip=DASK_CLUSTER),
    "docs/scale.md#4": Spec("#!/bin/bash", skip=f"a SLURM job script; {CLUSTER}"),
    "docs/scale.md#5": Spec("accelerate launch --multi_gpu --num_machines 2", skip=CLUSTER),
    # after docs/discovery.md#0, which writes runs/store
    "docs/scale.md#6": Spec("htd discover cluster --store runs/store --out runs/phenotypes_faiss"),
    "docs/scale.md#7": Spec("accelerate launch --multi_gpu --num_machines 4", skip=TRAIN_CLUSTER),
    "docs/evaluation.md#0": Spec("htd evaluate --real data/real_train", skip=GATED),
    "docs/results.md#0": Spec(
        "htd experiment examples/experiments/glas.yaml",
        subs=(
            (
                "glas.yaml --budget cpu-quick",
                "wsss4luad.yaml --budget tiny -o evaluators=[deeplabv3plus] -o seeds=[0] "
                "-o arms=[crop,unconditional] --out runs/exp",
            ),
        ),
    ),  # fmt: skip
    "docs/results.md#1": Spec(
        "from htd_plugins.experiment import load_experiment, run_experiment",
        subs=(
            (
                '"examples/experiments/glas.yaml", {"arms": ["crop", "unconditional"]}',
                '"examples/experiments/wsss4luad.yaml", {"arms": ["crop", "unconditional"], '
                '"evaluators": ["deeplabv3plus"], "seeds": [0]}',
            ),
            ('budget="cpu-quick"', 'budget="tiny"'),
        ),
    ),  # fmt: skip
    "docs/results.md#2": Spec(
        'htd experiment examples/experiments/glas.yaml --budget cpu-quick -o "seeds=[0,1]"',
        skip="ablation arms at cpu-quick: hours of CPU (tests/htd_plugins/experiment/"
        "test_ablation.py runs named ablation arms and an arm's own fit at the tiny budget)",
    ),
    "docs/results.md#3": Spec(
        "htd experiment examples/experiments/glas.yaml --budget cpu --threads 2",
        skip="the cpu run itself: about 2 hours of CPU per dataset (its tiny-budget form is "
        "docs/results.md#0)",
    ),
    "docs/results.md#4": Spec(
        "htd experiment examples/experiments/glas.yaml --budget cpu-quick -o",
        skip="the rerun itself: hours of CPU (its tiny-budget form is docs/results.md#0)",
    ),
    "docs/results.md#6": Spec(
        "python benchmarks/bench_autoencoders.py --experiment examples/experiments/wsss4luad.yaml",
        skip="trains four autoencoders on the real splits: about 40 minutes of CPU",
    ),
    "docs/results.md#7": Spec(
        "htd experiment examples/experiments/glas.yaml --budget cpu-quick --out runs/glas-cpu-quick-taef2",
        skip="cpu-quick experiment arms on TAEF2: about 25 minutes of CPU for the first, an hour "
        "per dataset for the two-seed ablation arm, 45 minutes per dataset for its 1600-step "
        "continuation (the pretrained-autoencoder path is tests/"
        "htd_plugins/experiment/test_pretrained_autoencoder.py; an arm continuing a shorter "
        "one: tests/htd_plugins/experiment/test_ablation.py)",
    ),
    "docs/results.md#8": Spec(
        'htd experiment examples/experiments/glas.yaml --budget cpu-quick -o "seeds=[0,1]" \\',
        skip="the ablation run itself: about 2 hours of CPU per dataset (tests/htd_plugins/"
        "experiment/test_ablation.py runs ablation arms at the tiny budget)",
    ),
    "docs/results.md#9": Spec(
        "htd experiment examples/experiments/glas.yaml --budget cpu-quick --threads 1 --out runs/glas-aeP \\",
        skip="the autoencoder ablation at cpu-quick: about 2 hours of CPU per dataset (an arm "
        "on its own autoencoder folder is tests/htd_plugins/evaluators/test_report_wording.py's "
        "decoded_by test; ablation arms at the tiny budget: tests/htd_plugins/experiment/"
        "test_ablation.py)",
    ),
    "docs/results.md#10": Spec(
        'B="builders: [semantic_map, {name: crop, placement: outside',
        skip="the steps curve at cpu-quick: about 1 h 25 min of CPU per dataset (an arm "
        "continuing a shorter one, and the curve's figure, at the tiny budget: tests/"
        "htd_plugins/experiment/test_ablation.py)",
    ),
    "docs/results.md#11": Spec(
        'B="builders: [semantic_map, {name: crop, placement: outside',
        skip="concatenation at equal wall time at cpu-quick: about 1 h 45 min of CPU per "
        "dataset (ablation arms with their own backbone and steps at the tiny budget: tests/"
        "htd_plugins/experiment/test_ablation.py)",
    ),
    "docs/results.md#12": Spec(
        "cp -r runs/glas-concat runs/glas-setsize",
        skip="grows the concatenation run's synthetic sets at cpu-quick and scores them and the "
        "collage arm with a longer DeepLabv3+: about 2.5 hours of CPU per dataset (a larger set "
        "growing a smaller one at the tiny budget: tests/htd_plugins/"
        "experiment/test_evaluators_and_generation.py; the table: tests/htd_plugins/experiment/"
        "test_set_size.py)",
    ),
    "docs/results.md#13": Spec(
        "htd experiment examples/experiments/wsss4luad.yaml --budget cpu --threads 2 \\",
        skip="the embedding arm's rerun at cpu: about 50 minutes of CPU over a copy of a cpu "
        "run's folder (the whole_crop option is tests/htd_plugins/condition_builders/"
        "test_embedding.py)",
    ),
    "docs/results.md#14": Spec(
        "python benchmarks/bench_embedding_arm.py",
        skip="a timing benchmark over an experiment run's folder (minutes of CPU)",
    ),
    "docs/results.md#5": Spec(
        "python benchmarks/bench_autoencoders.py --experiment examples/experiments/glas.yaml",
        skip="benchmarks over the real splits: about an hour of CPU, and the KL rows read "
        "the folders of experiment runs",
    ),
    "docs/evaluation.md#1": Spec(
        "htd evaluate --real ../shared/data/glas",
        subs=(("--out eval/", f"--limit 4 --encoders {FAST_ENCODER} --out eval/"),),
    ),
    "docs/evaluation.md#2": Spec(
        "from htd_plugins.evaluators import save_grid",
        prelude="from htd_core.dataset import Dataset\nsamples = list(Dataset('out/train'))[:2]\n"
        "cm = samples[0].class_map\n",
    ),
    "docs/evaluation.md#3": Spec(
        "from htd_core import create",
        subs=(('"inception_fid"', f'"{FAST_ENCODER}"'),),
        prelude="real_batches = [list(Dataset('out/train'))[:3]]\n"
        "synthetic_batches = [list(Dataset('out/synthetic'))[:3]]\n",
    ),
    "docs/evaluation.md#4": Spec(
        "from htd_core.evaluation import EvaluationDriver",
        subs=(
            (
                'EvaluationDriver(["frechet",',
                f'EvaluationDriver([{{"name": "frechet", "encoders": ["{FAST_ENCODER}"]}},',
            ),
        ),
        prelude="real = list(Dataset('out/train'))[:6]\n"
        "dual = uncond = list(Dataset('out/synthetic'))[:3]\n",
    ),
    "docs/evaluation.md#5": Spec("from pathlib import Path"),
    "docs/plugins.md#0": Spec("from htd_core import ClassMap"),
    "docs/plugins.md#1": Spec("import argparse"),
    "docs/plugins.md#2": Spec(
        "from htd_core.testing import ConditionBuilderConformance",
        prelude="import sys, types\nhtd_myplugin = types.ModuleType('htd_myplugin')\n"
        "exec(block_code('docs/plugins.md', 0), htd_myplugin.__dict__)\n"
        "sys.modules['htd_myplugin'] = htd_myplugin\n",
    ),
    "docs/reader-study.md#0": Spec("htd reader-study create --real data/real_tiles", skip=SERVER),
    "docs/reader-study.md#1": Spec(
        "htd reader-study create --real ../shared/data/glas",
        subs=(
            (
                "--synthetic-name dual gen/dual --synthetic-name uncond gen/uncond",
                "--synthetic-name dual out/synthetic --synthetic-name uncond out/uncond",
            ),
            ("--n 120", "--n 4"),
        ),
    ),
    "docs/reader-study.md#2": Spec("htd reader-study serve", skip=SERVER),
    "docs/reader-study.md#3": Spec(
        "htd reader-study report studies/glas-2025-06",
        skip="needs the readers' answers, which `serve` collects from people",
    ),
    "docs/slide-synthesis.md#0": Spec("htd crop-bank ../shared/data/glas", skip=DRAWN),
    "docs/slide-synthesis.md#1": Spec("from htd_core import Pipeline", skip=DRAWN),
    "docs/slide-synthesis.md#2": Spec(
        "htd train examples/pipeline.yaml --preset tiny --steps 300",
        subs=(
            ("--steps 300", "--steps 2"),
            ("--size 512 512", "--size 64 64"),
            ("-o size=64", "-o size=16 -o min_size=8"),
            ("--steps 8 --batch-size 256", "--steps 1 --batch-size 256"),
        ),
    ),  # fmt: skip
    "docs/slide-synthesis.md#3": Spec(
        "htd sample heterogeneous --out synthetic/patches", skip=DRAWN
    ),
}
#: Extra arguments per command prefix in every block of a file (few samples per command).
APPEND = {"docs/sampling.md": (("htd sample", "--limit 2"),)}


@dataclass(frozen=True)
class Block:
    doc: str
    index: int
    lang: str
    code: str
    line: int

    @property
    def key(self) -> str:
        return f"{self.doc}#{self.index}"


def blocks(doc: str) -> list[Block]:
    """The ```python and ```bash blocks of one file, in order."""
    path = ROOT / doc
    if not path.is_file():
        return []
    text = path.read_text()
    return [
        Block(doc, i, m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for i, m in enumerate(FENCE.finditer(text))
    ]


def block_code(doc: str, index: int) -> str:
    return blocks(doc)[index].code


def all_docs() -> list[str]:
    found = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
    return [d for d in DOCS if d in found] + [d for d in found if d not in DOCS]


def test_every_block_is_listed():
    """Each block is run or skipped with a reason; a new, moved or edited block shows here."""
    seen, problems = set(), []
    for doc in all_docs():
        for b in blocks(doc):
            seen.add(b.key)
            spec = SPECS.get(b.key)
            if spec is None:
                problems.append(f"{b.key} (line {b.line}) is not in SPECS: run it or skip it")
            elif not b.code.startswith(spec.first):
                problems.append(f"{b.key} (line {b.line}) now starts {b.code.splitlines()[0]!r}")
            elif spec.skip is None:
                problems += [
                    f"{b.key}: {old!r} is gone" for old, _ in spec.subs if old not in b.code
                ]
    problems += [f"{k} is in SPECS but not in the docs" for k in SPECS if k not in seen]
    assert problems == []


# -- the workspace -----------------------------------------------------------------------
def _tile(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An H&E-coloured noise tile and its mask: a gland disc (about 40 %) on non-gland."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
    mask = (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.36 * size) ** 2).astype(np.uint8)
    base = np.where(mask[..., None] == 1, (150, 70, 150), (230, 160, 200))
    image = np.clip(base + rng.normal(0, 18, (size, size, 3)), 0, 255).astype(np.uint8)
    return image, mask


def _tiny_pipeline_yaml(text: str) -> str:
    """examples/pipeline.yaml on tiny settings (each replaced value must still be there)."""
    subs = [("preset: small", "preset: tiny"), ("steps: 5000", "steps: 2\n  vae_steps: 2"),
            ("batch_size: 16", "batch_size: 2"), ("num_inference_steps: 25", "num_inference_steps: 2"),
            ("checkpoint_every: 250", "checkpoint_every: 1"), ("kid_subset_size: 16", "kid_subset_size: 2")]  # fmt: skip
    for old, new in subs:
        assert old in text, (
            f"examples/pipeline.yaml no longer has {old!r}: update tests/test_docs.py"
        )
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """WORK/repo (the current folder of every block) beside WORK/shared/data."""
    from htd_core.data import shared_data_dir

    real = shared_data_dir()
    if real is None:  # the documented flows start from its slides and chain on their outputs
        pytest.skip("real data folder ../shared/data is absent (set HTD_SHARED_DATA to run)")
    work = tmp_path_factory.mktemp("docs")
    data, repo = work / "shared" / "data", work / "repo"
    rng = np.random.default_rng(0)
    names = ["train_1", "train_2", "train_3", "train_4", "testA_1", "testA_2", "testB_1"]
    for sub in ("images", "masks"):
        (data / "glas" / sub).mkdir(parents=True)
    for name in names:
        image, mask = _tile(rng)
        Image.fromarray(image).save(data / "glas" / "images" / f"{name}_r0_c0.png")
        Image.fromarray(mask).save(data / "glas" / "masks" / f"{name}_r0_c0.png")
    for name in ("slides", "camelyon_mini", "wsss4luad_val"):
        if (real / name).is_dir():
            (data / name).symlink_to(real / name)
    (repo / "examples").mkdir(parents=True)
    text = (ROOT / "examples" / "pipeline.yaml").read_text()
    (repo / "examples" / "pipeline.yaml").write_text(_tiny_pipeline_yaml(text))
    (repo / "examples" / "experiments").symlink_to(ROOT / "examples" / "experiments")
    (repo / "examples" / "slide_synthesis").symlink_to(ROOT / "examples" / "slide_synthesis")
    (repo / "tests").symlink_to(ROOT / "tests")
    (repo / "my_masks").mkdir()
    Image.fromarray(_tile(rng)[1]).save(repo / "my_masks" / "drawn.png")  # a user's drawn mask
    saved = {k: os.environ.get(k) for k in ("HTD_SHARED_DATA", "HTD_THREADS")}
    os.environ.update(HTD_SHARED_DATA=str(data), HTD_THREADS="1")
    cwd = Path.cwd()
    os.chdir(repo)
    try:
        yield {"repo": repo, "data": data, "namespaces": {}, "ran": set()}
    finally:
        os.chdir(cwd)
        sys.modules.pop("htd_myplugin", None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- running blocks ----------------------------------------------------------------------
def _commands(code: str) -> list[str]:
    return [
        c
        for c in code.replace("\\\n", " ").splitlines()
        if c.strip() and not c.strip().startswith("#")
    ]


def _missing_shared(argv: list[str], data: Path) -> str | None:
    for arg in argv:
        value = arg.partition("=")[2] if "=" in arg else arg
        if "../shared/data/" in value and not Path(value).exists():
            return value
    return None


def run_block(block: Block, ws: dict) -> list[str]:
    """Run one block; returns notes (commands skipped for missing shared data)."""
    from htd_core.cli import main

    spec = SPECS[block.key]
    code = block.code
    for old, new in spec.subs:
        code = code.replace(old, new)
    notes = []
    if block.lang == "python":
        namespace = ws["namespaces"].setdefault(block.doc, {"block_code": block_code})
        exec(compile(spec.prelude, f"{block.key} prelude", "exec"), namespace)
        start = time.perf_counter()
        exec(
            compile(code, f"{block.doc} block {block.index} (line {block.line})", "exec"), namespace
        )
        if TIMES:
            notes.append(f"{time.perf_counter() - start:5.1f} s  python block {block.key}")
        return notes
    for command in _commands(code):
        for prefix, extra in APPEND.get(block.doc, ()):
            if command.lstrip().startswith(prefix):
                command = f"{command} {extra}"
        argv = shlex.split(command, comments=True)
        assert argv[0] == "htd", f"{block.key}: {command!r} is not an htd command: skip the block"
        missing = _missing_shared(argv, ws["data"])
        if missing:
            notes.append(f"skipped (no {missing}): {command}")
            continue
        start = time.perf_counter()
        status = main(argv[1:])
        assert status == 0, f"{block.key} (line {block.line}): `{command}` exited {status}"
        if TIMES:
            notes.append(f"{time.perf_counter() - start:5.1f} s  {command[:90]}")
    return notes


def run_doc(doc: str, workspace: dict) -> list[str]:
    """Run the blocks of ``doc`` that run, once per workspace (attempted counts as run)."""
    workspace["ran"].add(doc)
    todo = [b for b in blocks(doc) if b.key in SPECS and SPECS[b.key].skip is None]
    return [note for block in todo for note in run_block(block, workspace)]


@pytest.mark.parametrize("doc", [d for d in DOCS if (ROOT / d).is_file()])
def test_doc_code_runs(doc, workspace, capsys):
    # the docs chain on each other's outputs (out/train of the README's flow...): a doc run on
    # its own (-k, one worker) first runs those before it in DOCS that have not run here
    first = [
        d for d in DOCS[: DOCS.index(doc)] if d not in workspace["ran"] and (ROOT / d).is_file()
    ]
    for before in first:
        try:
            run_doc(before, workspace)
        except Exception as err:
            raise AssertionError(f"{before}, run first (its outputs are read), failed") from err
    notes = [f"ran first (its outputs are read): {', '.join(first)}"] if first else []
    notes += run_doc(doc, workspace)
    skipped = [
        f"{b.key}: {SPECS[b.key].skip}" for b in blocks(doc) if SPECS.get(b.key, Spec("")).skip
    ]
    with capsys.disabled():
        for note in skipped + notes:
            print(f"\n  docs test, {doc}: {note}", end="")
