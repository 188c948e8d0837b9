"""A file cache of real-set encoder features, so repeated evaluations never re-embed them.

One file per encoder in a cache folder (``real-features-<encoder>.npz``) holds a header (the
encoder's name, weights hash and preprocessing), one content key per image (SHA-1 of its
shape and pixels) and the float32 feature rows. The float64 statistics are recomputed from
the rows in well under a second, and the same rows serve KID and the privacy audit. A file
whose header differs from the encoder in use (other weights, other input size...) is refused
with a warning and rebuilt; rows holding NaN or inf are dropped with a warning naming the
file and rows, and recomputed; random-weight encoders are never cached, since two random
initialisations share the id ``"random"``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.interfaces import Encoder
from htd_core.io import atomic_write_bytes

CACHE_FORMAT = 1


class CacheRefusedWarning(UserWarning):
    """A cache file was written by another encoder, weights or preprocessing; it is rebuilt."""


def image_key(image: np.ndarray) -> str:
    """Content key of one uint8 image: SHA-1 of its shape and bytes."""
    h = hashlib.sha1(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def encoder_fingerprint(encoder: Encoder) -> dict[str, Any]:
    """What makes two encoders' features interchangeable: class, name, weights, preprocessing."""
    return {
        "format": CACHE_FORMAT,
        "encoder": encoder.name,
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "weights_id": encoder.weights_id,
        "embed_dim": int(encoder.embed_dim),
        "input_size": int(encoder.input_size),
        "mean": [float(v) for v in encoder.mean],
        "std": [float(v) for v in encoder.std],
        # encoders that resize their own way say so (inception_fid's ``resize`` option)
        "preprocessing": str(getattr(encoder, "preprocessing_id", "")),
        "resize": str(getattr(encoder, "resize", "bilinear-antialias")),
    }


class FeatureCache:
    """Features of real images under one encoder, read from and written to ``folder``.

    ``tag`` names what is embedded (default ``real``: the images themselves); another tag,
    e.g. ``recon-<model id>`` for their reconstructions by a model, gets its own file whose
    header records it, keyed by the content of the original image.
    """

    def __init__(self, folder: str | Path, encoder: Encoder, tag: str = "real") -> None:
        self.encoder = encoder
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", encoder.name)
        self.path = Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', tag)}-features-{safe}.npz"
        self.header = encoder_fingerprint(encoder)
        if tag != "real":
            self.header["of"] = tag
        self.enabled = not encoder.is_random
        self._rows: dict[str, np.ndarray] = {}
        self._dirty = False
        self._unsaved = 0
        self.refused = False
        if self.enabled and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                keys = [k.decode() for k in data["keys"]]
                feats = np.asarray(data["features"], np.float32)
        except Exception as exc:  # a torn or foreign file: rebuild it
            self._refuse(f"it cannot be read ({type(exc).__name__}: {exc})")
            return
        if header != self.header:
            diff = sorted(
                k for k in set(header) | set(self.header) if header.get(k) != self.header.get(k)
            )
            got = {k: header.get(k) for k in diff}
            self._refuse(
                f"it was written for {got}, not { ({k: self.header.get(k) for k in diff}) }"
            )
            return
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():  # a cache is trusted blindly later: NaN would pass as "the encoder's fault"
            rows = np.flatnonzero(bad)
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            self._dirty = True  # rewritten without them at the next save
            warnings.warn(
                f"feature cache {self.path} holds NaN or inf in {len(rows)} of {len(feats)} rows "
                f"(rows {shown}): they are dropped and recomputed (delete the file to rebuild "
                "it whole)",
                CacheRefusedWarning,
                stacklevel=3,
            )
        self._rows = {k: f for k, f, b in zip(keys, feats, bad, strict=True) if not b}

    def _refuse(self, why: str) -> None:
        self.refused = True
        self._dirty = True  # overwrite it with this encoder's features
        warnings.warn(
            f"feature cache {self.path} refused: {why}; recomputing the real-set features",
            CacheRefusedWarning,
            stacklevel=4,
        )

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> np.ndarray | None:
        return self._rows.get(key) if self.enabled else None

    def put(self, key: str, features: np.ndarray) -> None:
        """Remember one image's features (non-finite ones are never cached)."""
        if self.enabled and key not in self._rows and np.isfinite(features).all():
            self._rows[key] = np.asarray(features, np.float32)
            self._dirty = True
            self._unsaved += 1

    def checkpoint(self, every: int = 512) -> None:
        """Save when ``every`` new rows accumulated, so a killed run loses little work."""
        if self._unsaved >= every:
            self.save()

    def save(self) -> bool:
        """Write the file atomically when something changed; returns whether it wrote."""
        if not (self.enabled and self._dirty and self._rows):
            return False
        keys = np.array([k.encode() for k in self._rows], dtype="S40")
        feats = np.stack(list(self._rows.values())).astype(np.float32)
        buf = io.BytesIO()
        np.savez(
            buf, header=np.array(json.dumps(self.header, sort_keys=True)), keys=keys, features=feats
        )
        atomic_write_bytes(self.path, buf.getvalue())
        self._dirty = False
        self._unsaved = 0
        return True


def embed_cached(
    encoder: Encoder,
    cache: FeatureCache | None,
    images: list[np.ndarray],
    keys: list[str],
    batch_size: int = 32,
) -> np.ndarray:
    """float32 features N x D of ``images``, from ``cache`` where it holds their ``keys``;
    the others are embedded and added to it (and saved every few hundred rows)."""
    from htd_plugins.evaluators.distance.encoding import embed_images

    if cache is None or not cache.enabled:
        return embed_images(encoder, images, batch_size)
    feats = np.zeros((len(images), encoder.embed_dim), np.float32)
    missing = []
    for i, k in enumerate(keys):
        row = cache.get(k)
        if row is None:
            missing.append(i)
        else:
            feats[i] = row
    if missing:
        feats[missing] = embed_images(encoder, [images[i] for i in missing], batch_size)
        for i in missing:
            cache.put(keys[i], feats[i])
        cache.checkpoint()
    return feats
