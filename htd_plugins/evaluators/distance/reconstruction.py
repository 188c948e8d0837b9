"""The autoencoder's ceiling: real images passed through a model's autoencoder.

No generated set can be closer to the real images than their own reconstructions, so the
``frechet`` evaluator reports the FD of the held-out set's reconstructions against the
held-out set itself next to the generated sets' FD: how much of the gap is the autoencoder.
The model is a saved pipeline folder (``htd evaluate --model``) or a backbone object; it is
loaded on first use, and a folder's content hash (:func:`htd_core.pipeline_files.pipeline_id`) keys
the cached features of its reconstructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError


class Reconstructor:
    """Reconstruct uint8 images with a model's autoencoder (:meth:`htd_core.Backbone.reconstruct`).

    Args:
        model: a saved pipeline folder or a Backbone (anything with ``reconstruct``).
        device: torch device to load a folder's backbone on.

    Raises:
        InputError: the folder is not a saved pipeline, or the object cannot reconstruct.
    """

    def __init__(self, model: str | Path | Any, device: str = "cpu") -> None:
        from htd_core.pipeline_files import pipeline_id

        self.device = device
        if isinstance(model, str | Path):
            self.path: Path | None = Path(model)
            self.model_id: str | None = pipeline_id(self.path)  # also checks the folder
            self._backbone: Any = None
        elif callable(getattr(model, "reconstruct", None)):
            self.path, self.model_id, self._backbone = None, None, model
        else:
            raise InputError(
                f"frechet: model={model!r} is neither a saved pipeline folder nor a backbone "
                "with reconstruct()"
            )

    @property
    def backbone(self) -> Any:
        """The backbone, loaded from the folder on first use."""
        if self._backbone is None:
            from htd_core.pipeline import Pipeline

            pipe = Pipeline.from_pretrained(self.path, condition_builders=[], device=self.device)
            self._backbone = pipe.backbone
        return self._backbone

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Reconstructions of uint8 H x W x 3 images of any sizes, in input order."""
        out: list[np.ndarray | None] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            by_size.setdefault(tuple(np.shape(img)), []).append(i)
        for idx in by_size.values():
            try:
                recon = self.backbone.reconstruct(np.stack([images[i] for i in idx]))
            except NotImplementedError as exc:
                raise InputError(f"frechet: cannot measure reconstruction FD: {exc}") from exc
            for i, r in zip(idx, recon, strict=True):
                out[i] = np.asarray(r, np.uint8)
        return out  # type: ignore[return-value]
