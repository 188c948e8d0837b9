"""The memory a synthetic slide needs, estimated before its first window.

What :func:`~htd_plugins.slide_synthesis.api.generate_slide` holds at once (module docs of
:mod:`.canvas` and :mod:`.outputs`): the layout (uint8, one byte per pixel) and the slide's
half-resolution pyramid level (RGB uint8, 3/4 byte per pixel); the latent canvas and what a
denoising step makes of it (float32, C channels per latent cell: the canvas, its noise, the
scaled input, the blended prediction, the step's output and its quotient; DPM-Solver++ keeps
two earlier predictions; the blending weights are float64 per cell); one batch of windows
(their latents, predictions and the network's activations, which :data:`ACTIVATIONS` bounds
per window pixel); and the band of decoded rows (float32 RGB plus a weight, two tile rows
high). A layout 40000 px wide is about 2.8 GB before any window.
"""

from __future__ import annotations

from dataclasses import dataclass

from htd_core.errors import InputError

#: float32 values the network holds at once per window pixel: tests/htd_plugins/
#: slide_synthesis/test_memory.py measured a peak RSS rise of about 175 MB for batches of
#: 1024 windows of 16 px (the tiny preset), about 170 per pixel, canvas included.
ACTIVATIONS = 170
CANVASES = {"ddim": 6, "dpmsolver++": 8}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by part; :attr:`total` is what the run needs at its peak."""

    layout: int
    canvas: int
    windows: int
    decode: int

    @property
    def total(self) -> int:
        return self.layout + self.canvas + self.windows + self.decode

    def describe(self) -> str:
        parts = ("layout", "canvas", "windows", "decode")
        return ", ".join(f"{p} {gib(getattr(self, p))}" for p in parts)


def estimate_memory(
    height: int,
    width: int,
    *,
    factor: int,
    channels: int,
    window: int,
    batch_size: int,
    decode_tile: int,
    scheduler: str,
) -> MemoryEstimate:
    """The peak memory of a ``height`` x ``width`` px slide (module doc).

    Args:
        factor: the autoencoder's px per latent cell; ``channels``: its latent channels.
        window: the model's window side in px; ``batch_size``: windows per model call.
        decode_tile: the decoding tile side in latent cells.
        scheduler: the sampler (DPM-Solver++ keeps two more canvases than DDIM).
    """
    cells = -(-height // factor) * -(-width // factor)
    canvas = (CANVASES.get(scheduler, 8) * 4 * channels + 8) * cells
    windows = int(batch_size * window**2 * 4 * (ACTIVATIONS + 2 * channels / factor**2))
    band = 2 * decode_tile * factor
    return MemoryEstimate(
        layout=height * width + 3 * (-(-height // 2) * -(-width // 2)),
        canvas=canvas,
        windows=windows,
        decode=band * width * 4 * 4,
    )


def available_memory() -> int | None:
    """Bytes the system can give this process without swapping (Linux ``MemAvailable``);
    None where unknown (then nothing is refused)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(estimate: MemoryEstimate, height: int, width: int, batch_size: int) -> None:
    """Refuse a slide whose estimate exceeds the memory available, before the first window.

    Raises:
        InputError: the layout's size, the estimate by part, what is available, and the
            options that lower it.
    """
    available = available_memory()
    if available is None or estimate.total <= available:
        return
    lower = ""
    if batch_size > 1 and estimate.windows > estimate.total / 4:
        lower = (
            f"; --batch-size 1 lowers the windows' part to {gib(estimate.windows // batch_size)}"
        )
    raise InputError(
        f"the layout is {width} x {height} px: synthesising it needs about "
        f"{gib(estimate.total)} of memory ({estimate.describe()}) but {gib(available)} is "
        "available: draw a smaller layout or give a --region, or rasterise it at a coarser "
        f"--mpp (twice the um/px, a quarter of the memory){lower}"
    )


def gib(n: float) -> str:
    """Bytes as GiB (MiB under 1 GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
