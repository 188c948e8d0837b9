"""Pictures a person opens: colour previews of label maps and contact sheets of datasets.

All use the class colours of ``classes.json`` (:class:`htd_core.ClassMap`) and PIL only:

- :func:`map_preview`: a label map (e.g. a 10 x 14 px pseudo map, which looks black in an
  image viewer) in class colours, enlarged with nearest-neighbour pixels to a viewable size,
  with a legend of the classes present;
- :func:`contact_sheet`: patches of a dataset folder spread over its rows, each with the
  outlines of its mask's regions drawn in class colours and its class fractions below it;
- :func:`overlay_preview`: an index map blended over the image it describes (a pseudo map on
  its slide's thumbnail), beside the plain image, with a legend;
- :func:`class_gallery`: example patches of each class, one line per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from htd_core.types import ClassMap

#: Background of legends and captions; black marks ignored / background map cells.
PAPER = (255, 255, 255)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _legend(
    class_map: ClassMap,
    indices: Sequence[int],
    width: int,
    size: int = 12,
    extra: Sequence[tuple[str, tuple[int, int, int]]] = (),
):
    """A white strip with one coloured square and name per class index (then ``extra``)."""
    from PIL import Image, ImageDraw

    font, pad = _font(size), 4
    entries = [(class_map.names[i], tuple(class_map.colors[i])) for i in indices] + list(extra)
    x, y, rows = pad, pad, [[]]
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for name, colour in entries:  # lay out in lines that fit ``width``
        w = size + 4 + int(draw.textlength(name, font=font)) + 12
        if x + w > width and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((x, name, colour))
        x += w
    strip = Image.new("RGB", (width, pad + len(rows) * (size + pad) + pad), PAPER)
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        y = pad + r * (size + pad)
        for x, name, colour in row:
            draw.rectangle([x, y, x + size - 1, y + size - 1], fill=colour, outline=(0, 0, 0))
            draw.text((x + size + 4, y - 1), name, fill=(0, 0, 0), font=font)
    return strip


def map_preview(labels: np.ndarray, class_map: ClassMap, min_side: int = 512) -> np.ndarray:
    """RGB uint8 preview of an index map: class colours (ignored cells black), each cell
    enlarged to a square of ``ceil(min_side / shorter side)`` pixels (nearest neighbour, so
    cells stay sharp), and a legend of the classes present below it."""
    from PIL import Image

    labels = np.asarray(labels)
    scale = max(1, -(-min_side // max(1, min(labels.shape[:2]))))
    rgb = class_map.colorize(labels)
    big = Image.fromarray(rgb).resize(
        (labels.shape[1] * scale, labels.shape[0] * scale), Image.NEAREST
    )
    present = [int(i) for i in np.unique(labels) if 0 <= i < len(class_map.names)]
    ignored = (
        [("no class (background)", (0, 0, 0))] if (labels == class_map.ignore_index).any() else []
    )
    legend = _legend(class_map, present, max(big.width, 200), extra=ignored)
    out = Image.new("RGB", (max(big.width, legend.width), big.height + legend.height), PAPER)
    out.paste(big, (0, 0))
    out.paste(legend, (0, big.height))
    return np.asarray(out)


def outlined(image: np.ndarray, mask: np.ndarray, class_map: ClassMap, side: int) -> np.ndarray:
    """``image`` resized to ``side`` x ``side`` with the borders of the mask's regions drawn
    2 px wide in the colour of the region they enclose."""
    from PIL import Image

    resample = Image.LANCZOS if image.shape[0] > side else Image.NEAREST
    img = np.array(Image.fromarray(image).resize((side, side), resample))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((side, side), Image.NEAREST))
    edge = np.zeros(m.shape, bool)
    for shift in (1, 2):
        edge[:-shift] |= m[:-shift] != m[shift:]
        edge[:, :-shift] |= m[:, :-shift] != m[:, shift:]
    colours = class_map.colorize(m)
    img[edge] = colours[edge]
    return img


def fractions_text(mask: np.ndarray, class_map: ClassMap, top: int = 3) -> str:
    """``gland 62%, non_gland 38%``: the largest class fractions of the labelled pixels."""
    valid = mask[mask != class_map.ignore_index]
    if valid.size == 0:
        return "no labelled pixels"
    counts = np.bincount(valid.astype(np.int64), minlength=len(class_map.names))
    order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:top]
    return ", ".join(
        f"{class_map.names[i][:12]} {100 * counts[i] / valid.size:.0f}%" for i in order
    )


def contact_sheet(
    dataset: str | Path, path: str | Path, *, n: int = 24, columns: int = 6, side: int = 128
) -> Path:
    """Write a PNG of up to ``n`` patches of an htd dataset folder (spread evenly over its
    rows; of a shard folder: over its shards): each with its mask outlines in class colours,
    its row index and class fractions, and a legend of the classes. Returns ``path`` (written
    atomically).

    Raises:
        InputError: ``dataset`` is not a dataset or shard folder, or it is empty.
    """
    from PIL import Image, ImageDraw

    from htd_core.dataset import Dataset
    from htd_core.errors import InputError
    from htd_core.io import atomic_save_image
    from htd_core.shards import ShardDataset, is_shard_folder

    data = ShardDataset(dataset) if is_shard_folder(dataset) else Dataset(dataset)
    if not len(data):
        raise InputError(f"dataset {dataset} is empty: no contact sheet to draw")
    cm = data.class_map
    if isinstance(data, ShardDataset):  # read only the patches shown
        chosen = [(int(s.meta["index"]), s) for s in data.spread(n)]
    else:
        picks = np.linspace(0, len(data) - 1, min(n, len(data)))
        chosen = [(i, data[i]) for i in sorted({int(round(v)) for v in picks})]
    picks = [i for i, _ in chosen]
    columns = min(columns, len(picks))
    caption, pad = 30, 14
    cell_w, cell_h = side + pad, side + caption
    rows = -(-len(picks) // columns)
    legend = _legend(cm, range(len(cm.names)), columns * cell_w + pad)
    sheet = Image.new("RGB", (legend.width, legend.height + rows * cell_h + pad), PAPER)
    sheet.paste(legend, (0, 0))
    draw, font = ImageDraw.Draw(sheet), _font(10)
    for k, (i, sample) in enumerate(chosen):
        x = pad + (k % columns) * cell_w
        y = legend.height + (k // columns) * cell_h
        sheet.paste(Image.fromarray(outlined(sample.image, sample.mask, cm, side)), (x, y))
        h, w = sample.mask.shape
        draw.text((x, y + side + 2), f"#{i}  {w}x{h} px", fill=(60, 60, 60), font=font)
        draw.text((x, y + side + 15), fractions_text(sample.mask, cm), fill=(0, 0, 0), font=font)
    atomic_save_image(Path(path), np.asarray(sheet))
    return Path(path)


def _title(width: int, text: str, size: int = 13):
    """A white strip of ``width`` px with one line of black text."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, size + 10), PAPER)
    ImageDraw.Draw(strip).text((6, 4), text, fill=(0, 0, 0), font=_font(size))
    return strip


def overlay_preview(
    image: np.ndarray, labels: np.ndarray, class_map: ClassMap, *, alpha: float = 0.45,
    title: str = "",
) -> np.ndarray:  # fmt: skip
    """RGB uint8 picture of an index map over the image it describes: ``title`` on top, then
    the image and, beside it, the image with the map's class colours blended in (``alpha``;
    ignored cells left as they are), then a legend of the classes present.

    Args:
        image: H x W x 3 uint8 (e.g. a slide thumbnail).
        labels: H x W index map on the same pixels (``class_map.ignore_index``: no class).
        class_map: names and colours of the indices.
        alpha: opacity of the colours (0-1).

    Returns:
        uint8 array of height ``title + H + legend`` and width ``2 W + 3 x 8`` px.

    Raises:
        ValueError: ``labels`` is not ``image``'s height x width.
    """
    from PIL import Image

    image, labels = np.asarray(image, np.uint8), np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {image.shape[:2]}")
    valid = labels != class_map.ignore_index
    blend = image.astype(np.float32)
    colours = class_map.colorize(labels).astype(np.float32)
    blend[valid] = (1 - alpha) * blend[valid] + alpha * colours[valid]
    h, w = labels.shape
    pad = 8
    width = 2 * w + 3 * pad
    head = _title(width, title)
    present = [int(i) for i in np.unique(labels[valid])]
    legend = _legend(class_map, present, width)
    out = Image.new("RGB", (width, head.height + h + pad + legend.height), PAPER)
    out.paste(head, (0, 0))
    out.paste(Image.fromarray(image), (pad, head.height))
    out.paste(Image.fromarray(blend.round().astype(np.uint8)), (2 * pad + w, head.height))
    out.paste(legend, (0, head.height + h + pad))
    return np.asarray(out)


def class_gallery(
    rows: Sequence[tuple[str, tuple[int, int, int], str, Sequence[np.ndarray]]],
    *, side: int, per_row: int, title: str = "",
) -> np.ndarray:  # fmt: skip
    """RGB uint8 sheet of example patches per class: ``title`` on top, then one line per
    ``(name, colour, caption, patches)``: a colour swatch with the name and caption, then up
    to ``per_row`` patches resized to ``side`` px, each framed in the class colour.

    Returns:
        uint8 array of width ``LABEL + per_row (side + 6) + 6`` and height ``title +
        len(rows) (side + 6) + 6`` px (``LABEL`` = 180).
    """
    from PIL import Image, ImageDraw

    label, gap = 180, 6
    width = label + per_row * (side + gap) + gap
    head = _title(width, title)
    sheet = Image.new("RGB", (width, head.height + len(rows) * (side + gap) + gap), PAPER)
    sheet.paste(head, (0, 0))
    draw, font = ImageDraw.Draw(sheet), _font(12)
    for r, (name, colour, caption, patches) in enumerate(rows):
        y = head.height + gap + r * (side + gap)
        draw.rectangle([gap, y, gap + 15, y + 15], fill=tuple(colour), outline=(0, 0, 0))
        draw.text((gap + 22, y + 1), name, fill=(0, 0, 0), font=font)
        draw.text((gap, y + 22), caption, fill=(70, 70, 70), font=_font(10))
        for j, patch in enumerate(patches[:per_row]):
            resample = Image.LANCZOS if patch.shape[0] > side else Image.NEAREST
            tile = Image.fromarray(np.asarray(patch, np.uint8)).resize((side, side), resample)
            x = label + j * (side + gap) + gap
            sheet.paste(tile, (x, y))
            draw.rectangle(
                [x - 3, y - 3, x + side + 2, y + side + 2], outline=tuple(colour), width=2
            )
    return np.asarray(sheet)


def panel_sheet(
    rows: Sequence[Sequence[tuple[str, np.ndarray]]],
    class_map: ClassMap,
    path: str | Path,
    *,
    side: int = 128,
    title: str = "",
) -> Path:
    """Write a PNG of captioned panels, one row per item (e.g. ``map | crops | image`` of a
    generated sample), under a legend of the classes. Returns ``path`` (written atomically).

    Args:
        rows: per row, (caption, RGB uint8 H x W x 3) panels from left to right; each is
            resized (aspect kept; nearest neighbour when enlarged, so maps stay sharp) to fit
            ``side`` x ``side`` px.
        title: one line above the legend (empty: none).
    """
    from PIL import Image, ImageDraw

    from htd_core.io import atomic_save_image

    columns = max((len(r) for r in rows), default=1)
    caption, pad = 16, 10
    cell_w, cell_h = side + pad, side + caption
    legend = _legend(class_map, range(len(class_map.names)), max(columns * cell_w + pad, 200))
    top = 18 if title else 0
    sheet = Image.new("RGB", (legend.width, top + legend.height + len(rows) * cell_h + pad), PAPER)
    draw, font = ImageDraw.Draw(sheet), _font(10)
    if title:
        draw.text((pad, 3), title, fill=(0, 0, 0), font=_font(12))
    sheet.paste(legend, (0, top))
    for r, panels in enumerate(rows):
        y = top + legend.height + r * cell_h
        for c, (text, rgb) in enumerate(panels):
            img = Image.fromarray(np.asarray(rgb, np.uint8))
            scale = side / max(img.size)
            filt = Image.NEAREST if scale >= 1 else Image.LANCZOS
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             filt)  # fmt: skip
            x = pad + c * cell_w
            sheet.paste(img, (x, y))
            draw.text((x, y + side + 2), text[:28], fill=(0, 0, 0), font=font)
    atomic_save_image(Path(path), np.asarray(sheet))
    return Path(path)
