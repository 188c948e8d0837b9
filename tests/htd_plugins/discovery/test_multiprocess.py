"""``htd discover embed`` under ``accelerate launch``: two CPU processes share the slides."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np

from htd_core.images import opaque_id
from htd_plugins.discovery import tiatoolbox_sample_image
from htd_plugins.discovery.clustering import cluster_stores
from htd_plugins.discovery.embed import embed_slides
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.store import EmbeddingStore

#: The same encoder as conftest's ``TinyEncoder`` (seed 0), in a plugin a subprocess can load.
PLUGIN = """
import torch
from htd_core import Encoder, hookimpl


class TinyEncoder(Encoder):
    name = "tiny"
    embed_dim = 16
    input_size = 32
    weights_id = "random"

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(8, 3, 3, 3, generator=gen) * 0.5

    def forward(self, pixels):
        h = torch.relu(torch.nn.functional.conv2d(pixels, self.weight, padding=1))
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


@hookimpl
def htd_register_encoders(registry) -> None:
    registry.register("tiny", TinyEncoder)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_slides_and_cluster_reads_all(tmp_path, encoder_cls):
    plugins = tmp_path / "plugins"
    dist = plugins / "htdtiny-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: htdtiny\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[htd]\nhtdtiny = htdtiny_mod\n")
    (plugins / "htdtiny_mod.py").write_text(textwrap.dedent(PLUGIN))
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(4):  # four "slides" (the tiatoolbox H&E tile under four names: four ids)
        shutil.copy(tiatoolbox_sample_image(), slides / f"slide{i}.png")
    store = tmp_path / "store"

    def launch() -> list[str]:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                "-m", "htd_core.cli"]  # fmt: skip

    embed = ["discover", "embed", str(slides), "--out", str(store), "--encoder", "tiny", "--mpp",
             "2.0", "--patch-size", "32", "--stride", "25", "--slide-mpp", "0.5", "--workers", "0",
             "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HTD_THREADS": "1", "ACCELERATE_USE_CPU": "1"}  # fmt: skip
    proc = subprocess.run([*launch(), *embed], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each process took half of the slides, none twice (no --shard given)
    assert "process 0 of 2 embeds 2 of 4 slides" in proc.stderr
    assert "process 1 of 2 embeds 2 of 4 slides" in proc.stderr
    done = [line.split(":")[0] for line in proc.stdout.splitlines() if line.endswith("(done)")]
    ids = sorted(opaque_id(p) for p in slides.iterdir())
    assert sorted(done) == ids  # every slide embedded exactly once
    # the stores the processes wrote equal a one-process run, and clustering reads them all
    opened = EmbeddingStore(store)
    assert opened.slide_ids() == ids
    alone = EmbeddingStore(tmp_path / "alone", opened.info)
    embed_slides(alone, sorted(slides.iterdir()), encoder_cls(),
                 GridOptions(read_mpp=2.0, patch_size=32, stride=25, slide_mpp=0.5), progress=False)  # fmt: skip
    for sid in ids:
        a = np.asarray(opened.entry(sid).embeddings())
        np.testing.assert_allclose(a, np.asarray(alone.entry(sid).embeddings()), atol=2e-3)
    result = cluster_stores([store], tmp_path / "phen", samples_per_slide=40, levels=(2, 4),
                            progress=False)  # fmt: skip
    assert result.info["n_sampled"] == 4 * 40
    # rerunning the same launch resumes: nothing is embedded again
    again = subprocess.run(
        [*launch(), *embed], capture_output=True, text=True, env=env, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(already done)") == 4
