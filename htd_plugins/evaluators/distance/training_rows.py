"""The training images of the ``frechet`` evaluator's reference rows, embedded when needed.

The real-vs-real and reconstruction rows (:mod:`.references`) use a seeded subset of the real
images that are not the reference (the training images), as many as the synthetic set has.
That N is known only at ``aggregate``, so the images are held until then and only the subset
is embedded and passed through the autoencoder: at the ``demo`` budget 64 of 600 (cost:
benchmarks/bench_frechet_references.py). Past ``defer_bytes`` of held images every image is
embedded (and reconstructed) as it comes, in batches, and the held copies are dropped: the
memory is then the features', as before. Either way the same rows are picked, so the numbers
agree up to float rounding (an image embedded in another batch). Embedded rows are kept until
``reset``: ``aggregate`` can be called again after more ``update`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from htd_plugins.evaluators.distance.feature_cache import embed_cached, image_key
from htd_plugins.evaluators.distance.references import EncoderState


def training_subset(n_train: int, n_synthetic: int, seed: int) -> np.ndarray:
    """The training rows of the real-vs-real and reconstruction rows.

    Args:
        n_train: training images seen.
        n_synthetic: the synthetic set's N; the subset has as many (all ``n_train`` when there
            are fewer).
        seed: the evaluator's seed (the same rows for every synthetic set of that seed).

    Returns:
        int64 indices into the ``n_train`` training images, ascending.
    """
    m = min(int(n_synthetic), int(n_train))
    return np.sort(np.random.default_rng(seed).permutation(int(n_train))[:m])


class TrainingRows:
    """The training images of one evaluator lifecycle (``reset`` makes a new one).

    Args:
        batch_size: images per encoder (and autoencoder) call.
        reconstructor: :class:`.reconstruction.Reconstructor` or None (no reconstruction row).
        keyed: compute content keys (a feature cache or a reconstructor is in use).
        defer_bytes: held images past this many bytes are embedded as they come.
    """

    def __init__(self, batch_size: int, reconstructor: Any, keyed: bool, defer_bytes: int) -> None:
        self.batch_size, self.reconstructor, self.keyed = batch_size, reconstructor, keyed
        self.defer_bytes = defer_bytes
        self.held: dict[int, np.ndarray] = {}  # row -> image, not yet embedded
        self.n, self.held_bytes, self.streaming = 0, 0, False

    def add(self, images: Sequence[np.ndarray], states: list[EncoderState]) -> None:
        """Hold ``images`` (uint8 H x W x 3); past ``defer_bytes`` embed every held one."""
        for im in images:
            self.held[self.n] = im
            self.n += 1
            self.held_bytes += im.nbytes
        if self.streaming or self.held_bytes > self.defer_bytes:
            self.streaming = True
            self.embed(states, sorted(self.held))

    def embed(self, states: list[EncoderState], rows: Sequence[int]) -> None:
        """Features (and reconstructions' features) of ``rows`` not yet embedded, into each
        state's ``other_rows`` / ``recon_rows``; once streaming, their images are dropped."""
        todo = [int(r) for r in rows if int(r) not in states[0].other_rows]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            images = [self.held[r] for r in chunk]
            keys = [image_key(im) for im in images] if self.keyed else []
            recon = self._reconstruct(states, images, keys)
            for st in states:
                feats = embed_cached(st.encoder, st.cache, images, keys, self.batch_size)
                st.other_rows.update(zip(chunk, feats, strict=True))
                if self.reconstructor is not None:
                    out = [recon.get(i, im) for i, im in enumerate(images)]
                    feats = embed_cached(st.encoder, st.recon_cache, out, keys, self.batch_size)
                    st.recon_rows.update(zip(chunk, feats, strict=True))
            if self.streaming:
                for r in chunk:
                    self.held_bytes -= self.held.pop(r).nbytes

    def _reconstruct(
        self, states: list[EncoderState], images: list[np.ndarray], keys: list[str]
    ) -> dict[int, np.ndarray]:
        """Reconstructions of the images whose features some encoder has not cached."""
        if self.reconstructor is None:
            return {}
        missing = [
            i for i, key in enumerate(keys)
            if any(st.recon_cache is None or st.recon_cache.get(key) is None for st in states)
        ]  # fmt: skip
        if not missing:
            return {}
        return dict(zip(missing, self.reconstructor([images[i] for i in missing]), strict=True))

    def pick(self, states: list[EncoderState], held_out: bool, seed: int) -> None:
        """Set each state's ``other`` / ``recon`` to the rows the result uses: with a held-out
        reference the :func:`training_subset` of the synthetic set's N, else every row."""
        rows = (training_subset(self.n, states[0].synthetic.n, seed) if held_out
                else np.arange(self.n))  # fmt: skip
        self.embed(states, rows)
        for st in states:
            st.other = [np.stack([st.other_rows[int(r)] for r in rows])] if len(rows) else []
            has_recon = self.reconstructor is not None and len(rows)
            st.recon = [np.stack([st.recon_rows[int(r)] for r in rows])] if has_recon else []
