"""The one note about real and synthetic images of different sizes, which every evaluator that
resizes its inputs gives the same way: a one-line warning and a ``warnings`` entry in its
results (Frechet distance through its encoders, DeepLabv3+ and layout adherence through the
network's input size)."""

from __future__ import annotations


class ImageSizeWarning(UserWarning):
    """Real and synthetic images differ in size; both were resized, so the scores also measure
    the scale difference."""


def size_note(
    real_sizes: set[tuple[int, int]],
    synthetic_sizes: set[tuple[int, int]],
    input_size: int,
    label: str,
    measures: str = "the distance",
) -> str | None:
    """A note when real and synthetic images differ in size (both resized to ``input_size``);
    ``measures``: what the difference also enters ("the distance", "the IoU")."""
    if not real_sizes or not synthetic_sizes or real_sizes == synthetic_sizes:
        return None
    fmt = lambda sizes: ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:3])  # noqa: E731
    return (
        f"{label}: real images are {fmt(real_sizes)} and synthetic {fmt(synthetic_sizes)}; both "
        f"were resized to {input_size}x{input_size}, so {measures} also measures the scale "
        "difference (compare sets cut at the same size and mpp)"
    )
