"""Annotation files into tiatoolbox's SQLite-backed AnnotationStore.

QuPath GeoJSON, CAMELYON16/ASAP XML and tiatoolbox ``.db`` stores are opened as an
:class:`AnnotationStore` kept in a temporary file on disk (not in memory), so large
annotation sets are queried spatially instead of loaded whole.

Labels: a GeoJSON feature's class is ``properties.classification.name`` (QuPath), else
``label``, ``class`` or ``type``; an ASAP annotation's is its ``PartOfGroup``. Annotations
without area (points, lines, dots) are kept for the bounds check but never painted.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sqlite3
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from htd_core.errors import InputError

UNCLASSIFIED = "<unclassified>"
SUFFIXES = (".geojson", ".json", ".xml", ".db")


def label_of(properties: Mapping[str, Any] | None) -> str:
    """The class label of an annotation's properties (QuPath, tiatoolbox or plain)."""
    props = properties or {}
    cls = props.get("classification")
    if isinstance(cls, Mapping) and cls.get("name"):
        return str(cls["name"])
    if isinstance(cls, str) and cls:
        return cls
    for key in ("label", "class", "type"):
        if props.get(key) not in (None, ""):
            return str(props[key])
    return UNCLASSIFIED


@contextlib.contextmanager
def open_store(path: str | Path, scale: float = 1.0) -> Iterator[Any]:
    """An AnnotationStore for a GeoJSON, ASAP XML or tiatoolbox ``.db`` file (closed after).

    Args:
        path: annotation file; coordinates in level-0 pixels of the slide.
        scale: factor applied to coordinates (annotations drawn on a downsampled image).
    """
    SQLiteStore = sqlite_store_class()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotation file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"annotation file {path}: unsupported type {suffix!r}; use one of {list(SUFFIXES)}"
        )
    if suffix == ".db":
        if scale != 1.0:
            raise InputError(f"annotation_scale applies to GeoJSON/XML, not to the store {path}")
        store = SQLiteStore(path)
        try:
            yield store
        finally:
            store.close()
        return
    fd, tmp = tempfile.mkstemp(prefix="htd-annotations-", suffix=".db")
    os.close(fd)
    store = SQLiteStore(tmp)
    try:
        if suffix == ".xml":
            _add_asap_xml(store, path, scale)
        else:
            _add_geojson(store, path, scale)
        yield store
    finally:
        store.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@functools.cache
def sqlite_store_class() -> type:
    """tiatoolbox's SQLiteStore, usable on Pythons built without loadable sqlite extensions.

    tiatoolbox reads sqlite's compile options through ``enable_load_extension``, which such
    builds (pyenv's default, python.org macOS) lack; the pragma alone needs no extension.
    """
    from tiatoolbox.annotation.storage import SQLiteStore

    class Store(SQLiteStore):
        @staticmethod
        def compile_options() -> list[str]:
            with contextlib.closing(sqlite3.connect(":memory:")) as conn:
                return [opt for (opt,) in conn.execute("pragma compile_options").fetchall()]

    return Store


def _polygonal(geometry: Any) -> Any | None:
    """A valid (Multi)Polygon from ``geometry``, or None when it has no area."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if isinstance(geometry, Polygon | MultiPolygon):
        return None if geometry.is_empty else geometry
    parts = [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    return shapely.unary_union(parts) if parts else None


def _add_geojson(store: Any, path: Path, scale: float) -> None:
    from shapely.affinity import scale as affine_scale
    from tiatoolbox.annotation.storage import Annotation

    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"annotation file {path} is not valid GeoJSON: {exc}") from exc
    if isinstance(data, list):
        data = {"type": "FeatureCollection", "features": data}
    elif isinstance(data, Mapping) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, Mapping) or not isinstance(data.get("features"), list):
        raise InputError(
            f"annotation file {path}: expected a GeoJSON FeatureCollection (QuPath export)"
        )
    skipped = 0

    def keep(annotation: Any) -> Any:
        nonlocal skipped
        props = {"label": label_of(annotation.properties)}
        geometry = _polygonal(annotation.geometry)
        if geometry is None:  # kept for the bounds check, never painted
            skipped += 1
            geometry, props["no_area"] = annotation.geometry, True
        if scale != 1.0:
            geometry = affine_scale(geometry, scale, scale, origin=(0, 0))
        return Annotation(geometry, props)

    try:
        store.add_from_geojson(io.StringIO(json.dumps(data)), transform=keep)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"annotation file {path} has a malformed feature: {type(exc).__name__}: {exc}"
        ) from exc
    if skipped:
        warnings.warn(
            f"{path}: {skipped} annotation(s) without area (points, lines) are not used",
            stacklevel=3,
        )


def _add_asap_xml(store: Any, path: Path, scale: float) -> None:
    from shapely.geometry import Polygon
    from tiatoolbox.annotation.storage import Annotation

    batch: list[Any] = []
    skipped = 0
    try:
        for _, elem in ET.iterparse(path, events=("end",)):
            if elem.tag != "Annotation":
                continue
            points = sorted(
                (int(float(c.get("Order", i))), _num(c.get("X")), _num(c.get("Y")))
                for i, c in enumerate(elem.iter("Coordinate"))
            )
            kind = (elem.get("Type") or "Polygon").lower()
            if kind in ("dot", "pointset") or len(points) < 3:
                skipped += 1
            else:
                geometry = _polygonal(Polygon([(x * scale, y * scale) for _, x, y in points]))
                if geometry is None:
                    skipped += 1
                else:
                    # the group as written: ASAP's "None" group is a name to list and map
                    # (label_map={"None": ...}), not a missing class
                    label = elem.get("PartOfGroup") or UNCLASSIFIED
                    batch.append(Annotation(geometry, {"label": label}))
            elem.clear()
            if len(batch) >= 1000:
                store.append_many(batch)
                batch = []
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise InputError(f"annotation file {path} is not valid ASAP/CAMELYON XML: {exc}") from exc
    if batch:
        store.append_many(batch)
    if skipped:
        warnings.warn(
            f"{path}: {skipped} annotation(s) without area (dots, point sets) are not used",
            stacklevel=3,
        )


def _num(text: str | None) -> float:
    if text is None:
        raise ValueError("a Coordinate has no X or Y")
    return float(text.replace(",", "."))  # some ASAP exports write decimal commas


def store_labels(store: Any) -> dict[str, int]:
    """Label -> number of annotations."""
    counts: dict[str, int] = {}
    for props in store.pquery("*", unique=False).values():
        if props.get("no_area"):
            continue
        lab = label_of(props)
        counts[lab] = counts.get(lab, 0) + 1
    return counts
