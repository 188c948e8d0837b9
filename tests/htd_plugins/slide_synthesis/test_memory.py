"""Peak memory of a 2048 x 2048 px synthetic slide on CPU grows with the latent canvas, not
the image: no float image of the slide, no per-window state kept between steps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, tracemalloc
    import numpy as np, torch
    torch.set_num_threads(1)
    from pathlib import Path
    from htd_core import Pipeline
    from htd_core.testing import synthetic_sample
    from htd_core.types import TissueSample
    from htd_plugins.slide_synthesis import SlideLayout, generate_slide

    root, size = Path(sys.argv[1]), int(sys.argv[2])
    data = [synthetic_sample(16, classes=("stroma", "gland"), seed=s) for s in range(2)]
    data = [TissueSample(s.image, s.mask, s.class_map, {**s.meta, "mpp": 2.0}) for s in data]
    pipe = Pipeline(condition_builders=["semantic_map"],
                    backbone={"name": "controlnet_ldm", "preset": "tiny"},
                    stage_options={"generate": {"num_inference_steps": 1, "guidance_scale": 1.0,
                                                "batch_size": 1024}})
    pipe.fit(data, steps=1, vae_steps=1, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(root / "model")
    pipe = Pipeline.from_pretrained(root / "model")  # a fresh load, as `htd generate-slide`
    assert pipe.generation_options().batch_size == 1024  # the saved generate: defaults
    yy, xx = np.mgrid[:size, :size]
    layout = SlideLayout((((yy // 97) + (xx // 131)) % 2).astype(np.uint8), pipe.backbone.class_map, 2.0)
    del yy, xx
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    summary = generate_slide(pipe, layout, root / "slide.tif", overlap=0.0, progress=False)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ae = pipe.backbone.autoencoder
    latent = 4 * ae.latent_channels * (size // ae.factor) ** 2
    print(json.dumps({"rss_peak_increase": (after - before) * 1024, "python_numpy_peak": numpy_peak,
                      "latent_canvas_bytes": latent, "windows": summary["windows"]["count"]}))
    """
)


@pytest.mark.slow
def test_peak_memory_of_a_2048_px_slide(tmp_path):
    """Measured here: RSS peak +172-178 MB over the loaded model (mostly the tiny model's
    activations for 1024-window batches), Python/numpy peak 26-31 MB (tracemalloc), for a
    16 MB latent canvas; a float32 RGB image of the slide alone would be 48 MB. One step and
    no overlap keep the test short (about 30 s on a quiet core): overlap changes the number
    of windows, which are not kept, not the memory."""
    size = 2048
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(size)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    image_float = size * size * 3 * 4
    assert out["windows"] == (size // 16) ** 2
    assert out["python_numpy_peak"] < image_float  # never a float image of the slide
    assert out["rss_peak_increase"] < 512 * 2**20


def test_the_estimate_of_a_40000_px_layout_names_its_parts():
    """Issue 27: a 40000 px layout ran with no estimate until killed."""
    from htd_plugins.slide_synthesis.memory import estimate_memory

    def estimate(side, scheduler="ddim"):
        return estimate_memory(side, side, factor=8, channels=4, window=256, batch_size=16,
                               decode_tile=64, scheduler=scheduler)  # fmt: skip

    big = estimate(40000)
    assert big.layout == 40000**2 + 3 * 20000**2  # the layout and the half-resolution level
    assert big.canvas == (6 * 4 * 4 + 8) * 5000**2  # float32 canvases, float64 weights
    assert estimate(40000, "dpmsolver++").canvas > big.canvas  # two saved predictions more
    assert 6 * 2**30 < big.total < 8 * 2**30
    half = estimate(20000)
    assert half.layout * 4 == big.layout and half.canvas * 4 == big.canvas  # quadratic
    assert half.windows == big.windows  # a batch of windows does not grow with the layout
    assert "layout 2.6 GiB, canvas 2.4 GiB" in big.describe()


def test_a_layout_larger_than_memory_is_refused_before_the_first_window(
    pipe, draw, tmp_path, monkeypatch
):
    from htd_core.errors import InputError
    from htd_plugins.slide_synthesis import SlideLayout, generate_slide

    layout = SlideLayout(draw.blob_mask(48, 40), pipe.backbone.class_map, 2.0)
    monkeypatch.setattr("htd_plugins.slide_synthesis.memory.available_memory", lambda: 2**20)
    with pytest.raises(InputError) as err:
        generate_slide(pipe, layout, tmp_path / "slide.tif", progress=False)
    message = str(err.value)
    assert message.startswith("the layout is 40 x 48 px: synthesising it needs about ")
    assert "but 1 MiB is available" in message and "--mpp" in message and "--region" in message
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no lock, no sidecar
