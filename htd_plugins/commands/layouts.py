"""The layouts ``htd generate`` reads (rows of a dataset, or a folder of mask PNGs in class
indices or class colours) and the content keys of their files, which bind a resumed output to
the inputs it was started from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def read_layouts(args: argparse.Namespace, class_map: Any, output: Path | None = None) -> list[Any]:
    """Layouts (samples, with images when they come from a dataset). Each one's ``layout``
    meta is ``<folder>#<i>``: row ``i`` of the dataset, or the ``i``-th mask PNG (sorted) of
    the folder, the folder given relative to ``output`` (no local absolute path, no file name)."""
    import numpy as np
    from PIL import Image

    from htd_core.dataset import Dataset
    from htd_core.errors import InputError
    from htd_core.images import image_files
    from htd_core.splits import opaque_source
    from htd_core.types import TissueSample

    if args.dataset:
        data = Dataset(args.dataset)
        if data.class_map.names != class_map.names:
            raise InputError(
                f"dataset {args.dataset} has classes {list(data.class_map.names)} "
                f"({Path(args.dataset) / 'classes.json'}) but the model was trained on "
                f"{list(class_map.names)}: give layouts of the model's classes"
            )
        n = len(data) if args.limit is None else min(args.limit, len(data))
        where = relative_to(args.dataset, output)
        return [_with_layout(data[i], f"{where}#{i}") for i in range(n)]
    paths = image_files(args.masks, match="*.png")[: args.limit]
    if not paths:
        raise InputError(f"{args.masks}: no mask PNGs found")
    check_mask_classes(Path(args.masks), class_map)
    out = []
    lut = {tuple(c): i for i, c in enumerate(class_map.colors)}
    where = relative_to(args.masks, output)
    for i, p in enumerate(paths):
        raw = np.asarray(Image.open(p))
        if raw.ndim == 3:  # painted in class colours
            rgb = raw[..., :3].reshape(-1, 3)
            idx = np.array([lut.get(tuple(v), -1) for v in map(tuple, rgb)]).reshape(raw.shape[:2])
            if (idx < 0).any():
                raise InputError(
                    f"mask {p} has colours that are no class colour {dict(zip(class_map.names, class_map.colors, strict=True))}"
                )
            raw = idx.astype(np.uint8)
        class_map.check_mask(raw, f"mask {p}")
        meta = {"layout": f"{where}#{i}", "slide_id": opaque_source(p.name)}  # its source image
        out.append(TissueSample(None, raw.astype(np.uint8), class_map, meta))
    return out


def layout_names(args: argparse.Namespace, n: int) -> list[str]:
    """The files of the first ``n`` layouts (a dataset's mask files, or the mask PNGs), for
    errors: an error names the file, though outputs never record it."""
    from htd_core.dataset import Dataset
    from htd_core.images import image_files

    if args.dataset:
        return [str(Path(args.dataset) / r["mask"]) for r in Dataset(args.dataset).rows[:n]]
    return [str(p) for p in image_files(args.masks, match="*.png")[:n]]


def check_mask_classes(masks: Path, class_map: Any) -> None:
    """Refuse mask layouts whose own class list (``classes.json`` in the folder, or beside it
    when the folder is a dataset's ``masks/``) differs from the model's: their codes would
    mean other classes.

    Raises:
        InputError: naming the ``classes.json``, its classes and the model's.
    """
    from htd_core.dataset import read_class_map
    from htd_core.errors import InputError

    for path in (masks / "classes.json", masks.parent / "classes.json"):
        if path.is_file() and (path.parent == masks or masks.name == "masks"):
            names = read_class_map(path).names
            if names != tuple(class_map.names):
                raise InputError(
                    f"--masks {masks}: {path} lists classes {list(names)}, but the model was "
                    f"trained on {list(class_map.names)}, so the mask codes would mean other "
                    "classes: give masks of the model's classes (in its order)"
                )
            return


def relative_to(path: str | Path, output: Path | None) -> str:
    """``path`` relative to the output dataset folder (POSIX separators), as outputs record
    inputs: a dataset can be moved or shared with its inputs beside it, and holds no local
    absolute path. Without ``output``: ``path`` as given."""
    import os

    if output is None:
        return Path(path).as_posix()
    return Path(os.path.relpath(Path(path).resolve(), Path(output).resolve())).as_posix()


def _with_layout(sample: Any, name: str) -> Any:
    sample.meta = {**sample.meta, "layout": name}
    return sample


def layout_files(args: argparse.Namespace) -> list[Path]:
    """The files the layouts are read from (a dataset's manifest, class list, images and
    masks; or the mask PNGs of a folder)."""
    from htd_core.dataset import Dataset
    from htd_core.images import image_files

    if args.dataset:
        root = Path(args.dataset)
        rows = Dataset(root).rows
        files = [root / r[k] for r in rows for k in ("image", "mask")]
        return [root / "manifest.csv", root / "classes.json", *files]
    return image_files(args.masks, match="*.png")


def bank_files(bank: str) -> list[Path]:
    """The crop bank's file (``.safetensors`` appended when missing, as CropBank.load does)."""
    path = Path(bank)
    if not path.is_file() and path.with_name(path.name + ".safetensors").is_file():
        path = path.with_name(path.name + ".safetensors")
    if not path.is_file():
        from htd_core.errors import InputError

        raise InputError(f"--crop-bank {bank}: no such file (build one with CropBank.save)")
    return [path]


def files_key(paths: list[Path]) -> str:
    """SHA-256 (16 hex digits) of every file's name, size and modification time."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        st = Path(path).stat()
        digest.update(f"{Path(path).name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def crop_flag_error(exc: Exception, source: str, bank: str | None = None) -> Exception:
    """A crop builder's "no crop" error (``MissingCropError``, which names Python's
    ``bank=``) in the command line's words: ``--crop-bank`` and the verb that builds one.
    Other errors are returned as they are."""
    from htd_core.errors import InputError
    from htd_plugins.condition_builders import MissingCropError

    if not isinstance(exc, MissingCropError):
        return exc
    build = "`htd crop-bank DATA --out FILE`"
    if exc.bank_has is not None:
        return InputError(
            f"--crop-bank {bank} has no crop of class {exc.class_name!r} (it has: "
            f"{exc.bank_has}): rebuild it with {build} from data holding that class (a smaller "
            "-o size=... when its regions are small)"
        )
    what = (
        f"class {exc.class_name!r} has no crop"
        if exc.class_name
        else "the model's crop builder draws its crops from a crop bank"
    )
    return InputError(
        f"{what}: {source} gives no images to cut crops from, and no --crop-bank was given: "
        f"give --crop-bank FILE (build one from real image + mask data with {build})"
    )
