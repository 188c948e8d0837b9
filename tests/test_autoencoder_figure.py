"""examples/autoencoder_figure.py: real held-out patches beside each autoencoder's round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "autoencoder_figure.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_draws_one_column_per_autoencoder(shared_data, taef2_weights, tmp_path):
    out = tmp_path / "fig.png"
    proc = run("--budget", "tiny", "--size", "32", "--n", "2",
               "--autoencoder", f"TAEF2={taef2_weights}", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = np.asarray(Image.open(out))
    assert image.shape[1] == 6 + 2 * (96 + 6)  # real + TAEF2 columns of 96 px tiles
    assert image[40:130, 6:102].std() > 5  # a real patch, not a blank tile


def test_a_missing_folder_is_one_line_exit_2(tmp_path):
    proc = run("--autoencoder", f"X={tmp_path / 'nowhere'}", "--out", str(tmp_path / "f.png"))
    assert proc.returncode == 2 and "LABEL=FOLDER" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "f.png").exists()
