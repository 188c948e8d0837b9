"""The one pixel conversion: every image mode a lab may have becomes correctly scaled 8-bit
RGB (alpha on white, 16-bit scaled, greyscale flagged), or a clear error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.images import GreyscaleWarning, read_index_mask, read_rgb, to_rgb8

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
GREY8 = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
GREY16 = RNG.integers(0, 65536, (6, 7), dtype=np.uint16)
ALPHA = RNG.integers(0, 256, (6, 7), dtype=np.uint8)


def scaled16(v: np.ndarray) -> np.ndarray:
    """The correct 8-bit value of 16-bit data: round(v * 255 / 65535)."""
    return np.floor(v.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return np.floor(rgb * a + 255 * (1 - a) + 0.5).astype(np.uint8)


def grey(v: np.ndarray) -> np.ndarray:
    return np.repeat(v[..., None], 3, axis=2)


def _palette(path, transparent: bool):
    index = (GREY8 % 4).astype(np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)]
    im = Image.fromarray(index, "P")
    im.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 12))
    if transparent:
        im.info["transparency"] = 3  # index 3 is transparent
    im.save(path, transparency=3) if transparent else im.save(path)
    expected = np.array(colours, np.uint8)[index]
    if transparent:
        expected[index == 3] = 255
    return expected


def _write(kind: str, folder):
    """(path, expected uint8 RGB) for each mode."""
    import cv2
    import tifffile

    p = folder / kind
    if kind == "rgb8.png":
        Image.fromarray(RGB8).save(p)
        return p, RGB8
    if kind == "grey8.png":
        Image.fromarray(GREY8).save(p)
        return p, grey(GREY8)
    if kind == "bilevel.png":
        Image.fromarray(GREY8 > 127).save(p)
        return p, grey(np.where(GREY8 > 127, 255, 0).astype(np.uint8))
    if kind == "grey16.png":
        Image.fromarray(GREY16).save(p)
        return p, grey(scaled16(GREY16))
    if kind == "grey16.tif":
        tifffile.imwrite(p, GREY16)
        return p, grey(scaled16(GREY16))
    if kind == "rgb16.png":
        cv2.imwrite(str(p), RGB16[..., ::-1])
        return p, scaled16(RGB16)
    if kind == "rgb16.tif":
        tifffile.imwrite(p, RGB16, photometric="rgb")
        return p, scaled16(RGB16)
    if kind == "rgba.png":
        Image.fromarray(np.dstack([RGB8, ALPHA])).save(p)
        return p, on_white(RGB8, ALPHA)
    if kind == "rgba16.png":
        a16 = (ALPHA.astype(np.uint16) * 257)[..., None]
        cv2.imwrite(str(p), np.dstack([RGB16[..., ::-1], a16]))
        c = RGB16.astype(np.float64) / 65535
        a = ALPHA[..., None] / 255.0
        return p, np.floor(255 * (c * a + 1 - a) + 0.5).astype(np.uint8)
    if kind == "la.png":
        Image.fromarray(np.dstack([GREY8, ALPHA]), "LA").save(p)
        return p, grey(on_white(GREY8[..., None], ALPHA)[..., 0])
    if kind == "palette.png":
        return p, _palette(p, transparent=False)
    if kind == "palette_transparent.png":
        return p, _palette(p, transparent=True)
    if kind == "cmyk.tif":
        cmyk = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
        Image.fromarray(cmyk, "CMYK").save(p)
        c, k = cmyk[..., :3] / 255.0, cmyk[..., 3:] / 255.0
        return p, np.floor(255 * (1 - c) * (1 - k) + 0.5).astype(np.uint8)
    if kind == "float_grey.tif":
        f = RNG.random((6, 7)).astype(np.float32)
        tifffile.imwrite(p, f)
        return p, grey(np.floor(f.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    if kind == "float_rgb.tif":
        f = RNG.random((6, 7, 3)).astype(np.float32)
        tifffile.imwrite(p, f, photometric="rgb")
        return p, np.floor(f.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    if kind == "rgb.jpg":
        Image.fromarray(RGB8).save(p, quality=100)
        return p, np.asarray(Image.open(p).convert("RGB"))  # lossy: compare to the decoded
    raise AssertionError(kind)


MODES = [
    "rgb8.png", "grey8.png", "bilevel.png", "grey16.png", "grey16.tif", "rgb16.png",
    "rgb16.tif", "rgba.png", "rgba16.png", "la.png", "palette.png", "palette_transparent.png",
    "cmyk.tif", "float_grey.tif", "float_rgb.tif", "rgb.jpg",
]  # fmt: skip
GREY_MODES = {"grey8.png", "bilevel.png", "grey16.png", "grey16.tif", "la.png", "float_grey.tif"}


@pytest.mark.parametrize("kind", MODES)
def test_every_mode_reads_as_correctly_scaled_rgb8(tmp_path, kind):
    path, expected = _write(kind, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = read_rgb(path)
    assert got.dtype == np.uint8 and got.shape == (6, 7, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= (1 if kind == "cmyk.tif" else 0)
    flagged = [w for w in caught if issubclass(w.category, GreyscaleWarning)]
    assert bool(flagged) == (kind in GREY_MODES)
    if flagged:
        assert kind in str(flagged[0].message) and "not H&E" in str(flagged[0].message)


def test_greyscale_is_reported_once_per_folder(tmp_path):
    for i in range(3):
        Image.fromarray(GREY8).save(tmp_path / f"g{i}.png")
    with pytest.warns(GreyscaleWarning) as caught:
        for i in range(3):
            read_rgb(tmp_path / f"g{i}.png")
    assert len([w for w in caught if issubclass(w.category, GreyscaleWarning)]) == 1


def test_to_rgb8_arrays():
    assert np.array_equal(to_rgb8(RGB16), scaled16(RGB16))
    rgba = np.dstack([RGB8, np.zeros((6, 7), np.uint8)])
    assert (to_rgb8(rgba) == 255).all()  # fully transparent: white glass
    assert np.array_equal(to_rgb8(np.dstack([RGB8, np.full((6, 7), 255, np.uint8)])), RGB8)
    wide = GREY16.astype(np.int32)  # Pillow's "I" mode of a 16-bit file
    with pytest.warns(GreyscaleWarning):
        assert np.array_equal(to_rgb8(wide, "wide"), grey(scaled16(GREY16)))


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
        (np.full((2, 2, 3), -1, np.int16), "negative"),
        (np.full((2, 2, 3), 300.0), "up to 300"),
        (np.zeros((2, 2, 5), np.uint8), "not an image"),
    ],
)
def test_to_rgb8_refuses_what_is_not_an_image(pixels, message):
    with pytest.raises(InputError, match=message):
        to_rgb8(pixels, "x")


def test_unreadable_file_names_it(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png"):
        read_rgb(tmp_path / "bad.png")


def test_index_masks_keep_their_codes_and_refuse_colours(tmp_path):
    p = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), "P")
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    p.save(tmp_path / "p.png")
    assert read_index_mask(tmp_path / "p.png").tolist() == [[0, 1], [2, 3]]
    Image.fromarray(RGB8).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="colour pixels"):
        read_index_mask(tmp_path / "colour.png")
