"""The one way htd opens a slide: :class:`Slide`, through tiatoolbox, at a chosen resolution.

Every format OpenSlide reads (svs, ndpi, mrxs, tiff...) and plain images (png, jpg, as virtual
slides) open through ``WSIReader.open``. The samplers, discovery and the demo all open slides
here, and every slide id comes from :func:`htd_core.images.opaque_id` (a hash of the file
name, never the name or path). Sampler reads are addressed in *resolution* coordinates
(pixels at the requested mpp), the coordinate space of tiatoolbox's patch extractors, so a
sampler and tiatoolbox read identical pixels for the same grid; discovery reads patches by
their level-0 corner (:meth:`Slide.read_level0`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.images import opaque_id, read_rgb, to_rgb8

#: Default read resolution (um/px), the paper's 20x.
DEFAULT_MPP = 0.5
#: A request up to this factor finer than the base resolution is accepted (scanner calibration
#: differs slightly between slides: asking 0.5 um/px of a 0.503 um/px scan is fine).
MPP_TOLERANCE = 0.98
_NOT_SLIDES = {".db", ".json", ".geojson", ".xml", ".csv"}
#: Files opened as virtual slides from pixels decoded by htd (tiatoolbox drops their alpha).
PLAIN_IMAGES = {".png", ".jpg", ".jpeg", ".bmp"}


class Slide:
    """A whole-slide image (or plain image) opened for reading at a given mpp.

    Attributes:
        slide_id: :func:`htd_core.images.opaque_id` of the file name (16 hex digits).
        base_mpp: level-0 resolution in um/px.
        dimensions: level-0 (width, height) in pixels.

    Args:
        path: slide file.
        slide_mpp: base resolution (um/px at level 0) to use instead of the metadata; required
            when the file has none (e.g. re-encoded TCGA fixtures, plain images).
        default_mpp: base resolution used only when the file's metadata has none (a list of
            slides of which some lack it: discovery's ``--slide-mpp``).

    Raises:
        InputError: the file is missing, a folder, not an image, unreadable or corrupt, or it
            has no resolution metadata and neither mpp is given.
    """

    def __init__(
        self,
        path: str | Path,
        slide_mpp: float | None = None,
        *,
        default_mpp: float | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"slide {self.path} does not exist: check the path")
        if self.path.is_dir():  # not "corrupt": a folder (an MRXS's data folder, a slide set)
            inside = sorted(p.name for p in self.path.iterdir() if p.is_file())[:3]
            raise InputError(
                f"slide {self.path} is a folder, not a slide file: give one slide file (it "
                f"holds {inside or 'no file'}); for an MRXS slide give the .mrxs file beside "
                "its folder"
            )
        if self.path.suffix.lower() in _NOT_SLIDES:
            raise InputError(
                f"slide {self.path} is a {self.path.suffix} file, not an image: pass annotation "
                "files as `annotations` and the slide image as `slide`"
            )
        for name, value in (("slide_mpp", slide_mpp), ("default_mpp", default_mpp)):
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            ):
                raise InputError(f"{name}={value!r} for {self.path}: give a positive um/px value")
        with _quiet_tiatoolbox():  # it logs "unknown mpp" on the root logger at every open
            self.reader = _open_reader(self.path, slide_mpp)
            info = self.reader.info
        mpp = info.mpp
        if slide_mpp is not None:
            self.base_mpp = float(slide_mpp)
        elif mpp is None or mpp[0] is None or not np.isfinite(float(mpp[0])):
            if default_mpp is None:
                raise InputError(
                    f"slide {self.path} has no microns-per-pixel metadata: pass its level-0 "
                    "resolution with slide_mpp=<um/px> (--slide-mpp on the command line; about "
                    "0.25 for a 40x scan, 0.5 for 20x)"
                )
            self.base_mpp = float(default_mpp)
            info.mpp = np.array([self.base_mpp, self.base_mpp])
            self.reader.info = info  # tiatoolbox's public setter: reads in mpp units use it
        else:
            self.base_mpp = float(mpp[0])
        self.base_power = float(info.objective_power) if info.objective_power else None
        self.dimensions: tuple[int, int] = (
            int(info.slide_dimensions[0]),
            int(info.slide_dimensions[1]),
        )
        self.level_downsamples = [float(d) for d in info.level_downsamples]
        self.slide_id = opaque_id(self.path)
        self._probe()

    def _probe(self) -> None:
        """Decode one small region so a truncated or corrupt file fails now, by name."""
        w, h = self.dimensions
        try:
            self.reader.read_rect((w // 2, h // 2), (8, 8), resolution=0, units="level")
        except Exception as exc:
            raise InputError(
                f"slide {self.path} opened but cannot be decoded ({type(exc).__name__}: {exc}): "
                "the file is corrupt or truncated; copy it again"
            ) from exc

    # -- resolution ---------------------------------------------------------------------
    def resolve_mpp(
        self,
        mpp: float | None = None,
        objective_power: float | None = None,
        level: int | None = None,
    ) -> float:
        """The read resolution from one of mpp, objective power or pyramid level.

        Raises:
            InputError: several given, an unknown level, or finer than the slide's base.
        """
        given = {
            k: v
            for k, v in (("mpp", mpp), ("objective_power", objective_power), ("level", level))
            if v is not None
        }
        if len(given) > 1:
            raise InputError(f"give one of mpp, objective_power or level, not {sorted(given)}")
        if level is not None:
            if not isinstance(level, int) or not 0 <= level < len(self.level_downsamples):
                raise InputError(
                    f"level={level!r} for slide {self.path}: it has levels 0..{len(self.level_downsamples) - 1}"
                )
            return self.base_mpp * self.level_downsamples[level]
        if objective_power is not None:
            if not objective_power > 0:
                raise InputError(
                    f"objective_power={objective_power!r}: give a positive magnification"
                )
            base_power = self.base_power or 10.0 / self.base_mpp  # 10 / mpp: 20x = 0.5 um/px
            mpp = self.base_mpp * base_power / float(objective_power)
        mpp = DEFAULT_MPP if mpp is None else float(mpp)
        if not mpp > 0 or not math.isfinite(mpp):
            raise InputError(f"mpp={mpp!r}: give a positive resolution in um/px")
        if mpp < self.base_mpp * MPP_TOLERANCE:
            raise InputError(
                f"mpp={mpp} is finer than slide {self.path}'s base resolution {self.base_mpp:g} "
                f"um/px: reading it would invent detail; request mpp >= {self.base_mpp:g}"
            )
        return mpp

    def level_for(self, mpp: float) -> int:
        """The pyramid level tiatoolbox reads from for ``mpp`` (largest not coarser)."""
        scale = mpp / self.base_mpp
        ok = [i for i, d in enumerate(self.level_downsamples) if d <= scale * 1.0001]
        return max(ok) if ok else 0

    def dimensions_at(self, mpp: float) -> tuple[int, int]:
        """(width, height) in pixels at ``mpp`` (tiatoolbox's rounding)."""
        w, h = self.reader.slide_dimensions(resolution=mpp, units="mpp")
        return int(w), int(h)

    # -- pixels -------------------------------------------------------------------------
    def read(self, x: int, y: int, size: int, mpp: float) -> np.ndarray:
        """uint8 size x size x 3 RGB at ``mpp``; (x, y) in pixels at that resolution."""
        try:
            region = self.reader.read_rect(
                (int(x), int(y)),
                (size, size),
                resolution=mpp,
                units="mpp",
                coord_space="resolution",
            )
        except Exception as exc:
            raise InputError(
                f"cannot read slide {self.path} at ({x}, {y}): {type(exc).__name__}: {exc}"
            ) from exc
        return as_rgb(region)

    def read_level0(self, x0: int, y0: int, size: int, mpp: float) -> np.ndarray:
        """uint8 size x size x 3 RGB at ``mpp`` whose top-left corner is level-0 pixel
        (x0, y0); anything outside the slide reads as white glass (255)."""
        try:
            region = self.reader.read_rect(
                (int(x0), int(y0)), (size, size), resolution=mpp, units="mpp",
                pad_constant_values=255,
            )  # fmt: skip
        except Exception as exc:
            raise InputError(
                f"cannot read slide {self.path} at level-0 ({x0}, {y0}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        region = as_rgb(region)
        if region.shape[:2] != (size, size):  # tiatoolbox's rounding at some scales
            from PIL import Image

            region = np.asarray(Image.fromarray(region).resize((size, size), Image.BILINEAR))
        return np.ascontiguousarray(region)

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole slide as uint8 RGB at ``mpp`` (coarse: tissue masks)."""
        return as_rgb(self.reader.slide_thumbnail(resolution=mpp, units="mpp"))

    def __repr__(self) -> str:
        return f"Slide(id={self.slide_id}, {self.dimensions[0]}x{self.dimensions[1]} @ {self.base_mpp:g} um/px)"


@contextlib.contextmanager
def _quiet_tiatoolbox() -> Iterator[None]:
    """Silence logging below ERROR while tiatoolbox opens a slide (we raise our own errors)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _open_reader(path: Path, slide_mpp: float | None) -> Any:
    """tiatoolbox's reader; a plain image (a virtual slide) is decoded by
    :func:`htd_core.images.read_rgb` first (alpha on white, 16-bit scaled, grey flagged),
    since tiatoolbox's own decoding drops alpha (a transparent background turns black)."""
    from tiatoolbox.wsicore.wsireader import VirtualWSIReader, WSIReader

    mpp = (float(slide_mpp), float(slide_mpp)) if slide_mpp is not None else None
    try:
        if path.suffix.lower() in PLAIN_IMAGES:
            return WSIReader.open(read_rgb(path, large=True), mpp=mpp)
        reader = WSIReader.open(path, mpp=mpp)
        if isinstance(reader, VirtualWSIReader):  # a plain (untiled) TIFF
            known = reader.info.mpp
            known = None if known is None or known[0] is None else tuple(map(float, known))
            return WSIReader.open(read_rgb(path, large=True), mpp=mpp or known)
        return reader
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"cannot open slide {path} ({type(exc).__name__}: {exc}): it is corrupt or not a "
            "format OpenSlide/tiatoolbox reads (svs, ndpi, mrxs, tiff, png, jpg...)"
        ) from exc


def as_rgb(region: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 RGB from any read (grey, RGBA: composited on white, 16-bit...), through
    the one pixel conversion :func:`htd_core.images.to_rgb8`."""
    return to_rgb8(region, "slide region")
