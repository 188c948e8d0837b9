"""``distill`` stage (teacher labels -> ViT-small student) and the student's map path.

Both read pixels, so both are given the slide files; ``distill`` matches them to the store's
entries by opaque id (the store records no path).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import HtdError, InputError
from htd_core.io import atomic_write_json
from htd_plugins.discovery.classifier import (
    ARCH,
    MEAN,
    STD,
    StudentClassifier,
    save_student,
    train_student,
)
from htd_plugins.discovery.clustering import Phenotypes
from htd_plugins.discovery.embed import select_shard, slides_by_id
from htd_plugins.discovery.grid import PatchGrid
from htd_plugins.discovery.holdout import split_patches
from htd_plugins.discovery.maps import draw_pictures, write_slide_maps, write_tree
from htd_plugins.discovery.patches import GridOptions, PatchDataset, patch_batches, plan_slide
from htd_plugins.discovery.slide_ids import record_slide_ids
from htd_plugins.discovery.store import check_finite, open_stores


def resize_uint8(images: Any, size: int) -> np.ndarray:
    """Antialiased bilinear resize of uint8 N x H x W x 3 (the one resize train and maps share)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images))
    if x.shape[1] == size and x.shape[2] == size:
        return x.numpy()
    x = x.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def extract_patches(
    entries: list[Any], paths: dict[str, Path], slide_of: np.ndarray, row_of: np.ndarray,
    size: int, cache: Path, workers: int, progress: bool, stain: dict[str, Any] | None = None,
) -> np.ndarray:  # fmt: skip
    """uint8 N x size x size x 3 memmap of the selected patches, filled resumably per slide.

    Args:
        entries: the store entries; ``paths`` maps their slide ids to the slide files.
        slide_of, row_of: per selected patch, its entry index and its row in that entry.
        stain: the store's stain target; patches are normalised as they were embedded (with
            each slide's recorded ``stain_source``).
    """
    import hashlib

    from tqdm.auto import tqdm

    from htd_plugins.discovery.stain import PatchNormalizer

    n = len(slide_of)
    key = hashlib.sha1(
        json.dumps([[e.slide_id for e in entries], size, stain], sort_keys=True).encode()
        + np.ascontiguousarray(slide_of).tobytes()
        + np.ascontiguousarray(row_of).tobytes()
    ).hexdigest()
    done_path = cache.with_suffix(".json")
    state = json.loads(done_path.read_text()) if done_path.exists() and cache.exists() else {}
    done = set(state.get("slides", [])) if state.get("key") == key else set()
    images = np.memmap(cache, np.uint8, "r+" if done else "w+", shape=(n, size, size, 3))
    position = np.arange(n)
    bar = tqdm(total=n, desc="reading patches", unit="patch", disable=not progress, file=sys.stderr)
    for s, entry in enumerate(entries):
        pos = position[slide_of == s]
        if entry.slide_id in done or not len(pos):
            bar.update(len(pos))
            continue
        grid = PatchGrid.from_dict(entry.meta["grid"])
        normalize = None if stain is None else PatchNormalizer(stain, entry.meta["stain_source"])
        dataset = PatchDataset(
            paths[entry.slide_id], grid, entry.coords()[row_of[pos]], normalize=normalize
        )
        at = 0
        for batch in patch_batches(dataset, 64, workers):
            images[pos[at : at + len(batch)]] = resize_uint8(batch, size)
            at += len(batch)
            bar.update(len(batch))
        images.flush()
        done.add(entry.slide_id)
        atomic_write_json(done_path, {"key": key, "slides": sorted(done)})
    bar.close()
    return images


def distill(
    store_roots: list[str | Path],
    clustering: str | Path,
    out: str | Path,
    *,
    slides: Sequence[str | Path],
    input_size: int = 64,
    arch: str = ARCH,
    depth: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 5e-4,
    val_fraction: float = 0.2,
    block: int = 8,
    holdout: str = "auto",
    max_patches: int = 200_000,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the student on teacher labels (k = P); returns its config with held-out metrics.

    ``slides`` are the slide files embedded in the stores (matched by opaque id; others are
    ignored). The held-out patches (``holdout``: whole slides, or ``block`` x ``block`` cell
    blocks with a margin; :func:`~htd_plugins.discovery.holdout.split_patches`) share no
    pixels with the training patches; the config's ``split`` says which was used.

    Raises:
        InputError: a stored slide with tissue is not among ``slides``, or too few patches.
    """
    phenotypes = Phenotypes.load(clustering)
    stores = open_stores(list(store_roots))
    for store in stores:
        store.check_encoder(phenotypes.encoder, phenotypes.weights_id)
    entries = [e for s in stores for e in s.entries() if e.n > 0]
    check_finite(entries)  # a NaN row would be taught as phenotype 0
    paths = slides_by_id(slides)
    missing = [e.slide_id for e in entries if e.slide_id not in paths]
    if missing:
        raise InputError(
            f"{len(missing)} slide(s) of the stores are not among the given slides (ids "
            f"{missing[:3]}): pass the slide files that were embedded (the store keeps no paths)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([e.n for e in entries])]).astype(np.int64)
    total = int(offsets[-1])
    if total < 2:
        raise InputError(f"the stores hold {total} tissue patches: too few to distill")
    rng = np.random.default_rng(seed)
    chosen = (
        np.arange(total)
        if total <= max_patches
        else np.sort(rng.choice(total, max_patches, replace=False))
    )
    slide_of = np.searchsorted(offsets, chosen, side="right") - 1
    row_of = chosen - offsets[slide_of]
    labels = np.empty(len(chosen), np.int64)
    coords = np.empty((len(chosen), 2), np.int64)
    for s, entry in enumerate(entries):
        here = slide_of == s
        labels[here] = phenotypes.assign(entry.embeddings())[row_of[here]]
        coords[here] = entry.coords()[row_of[here]]
    slide_ids = np.asarray([e.slide_id for e in entries])[slide_of]
    grids = {e.slide_id: e.meta["grid"] for e in entries}
    split = split_patches(slide_ids, coords, grids, block=block, fraction=val_fraction,
                          holdout=holdout)  # fmt: skip
    val, stain = split.val, stores[0].stain_target
    cache = out / f"patches_{input_size}.u8"
    images = extract_patches(entries, paths, slide_of, row_of, input_size, cache, workers, progress,
                             stain)  # fmt: skip
    p = phenotypes.tree.n_leaves
    model, info = train_student(
        images, labels, split.train, out, num_classes=p, input_size=input_size, arch=arch,
        depth=depth, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
        run_key=f"{phenotypes.clustering_id}:{arch}:{depth}:{input_size}:{epochs}:{batch_size}:"
                f"{lr}:{seed}:{len(labels)}:{json.dumps(split.info, sort_keys=True)}",
    )  # fmt: skip
    student = StudentClassifier(model, {"input_size": input_size, "num_classes": p})
    val_idx = np.nonzero(val)[0]
    pred = np.concatenate(
        [student.predict(images[val_idx[i : i + 256]]) for i in range(0, len(val_idx), 256)]
    )
    truth = labels[val]
    metrics: dict[str, float] = {}
    for k in phenotypes.levels:  # top-1 and the majority-class baseline at every level
        t_k, p_k = phenotypes.tree.coarsen(truth, k), phenotypes.tree.coarsen(pred, k)
        metrics[f"top1_k{k}"] = float((p_k == t_k).mean())
        metrics[f"majority_baseline_k{k}"] = float(np.bincount(t_k, minlength=k).max() / len(t_k))
    metrics["top1"] = float((pred == truth).mean())
    metrics["majority_baseline"] = float(np.bincount(truth, minlength=p).max() / len(truth))
    grid0 = entries[0].meta["grid"]
    config = {
        "arch": arch, "depth": depth, "num_classes": p, "input_size": input_size, "mean": MEAN, "std": STD,
        "read_mpp": grid0["read_mpp"], "patch_size": grid0["patch_size"],
        "teacher_encoder": phenotypes.encoder, "teacher_weights_id": phenotypes.weights_id,
        "clustering_id": phenotypes.clustering_id, "levels": list(phenotypes.levels),
        "n_train": int(split.train.sum()), "n_val": int(val.sum()), "epochs": epochs, "block": block,
        "val_fraction": val_fraction, "split": split.info, "stain": stain, "metrics": metrics, **info,
    }  # fmt: skip
    save_student(out, model, config)
    return config


def maps_with_classifier(
    classifier: str | Path,
    clustering: str | Path,
    slides: Sequence[str | Path],
    out: str | Path,
    *,
    stride: int | None = None,
    min_tissue: float = 0.25,
    slide_mpp: float | None = None,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> tuple[dict[str, dict[int, Path]], dict[str, str]]:
    """Student path: slides -> tissue grid -> ViT-small -> maps, their pictures (overlay,
    gallery) and the slides' rows of ``out/slide_ids.csv``. A student distilled from a
    stain-normalised store normalises each new slide the same way (its own source stains,
    the store's target). A ``stride`` below the patch size gives finer maps (overlapping
    windows; each costs one student forward pass: benchmarks/bench_discovery.py).

    Returns:
        (written, skipped): opaque slide id -> {k: map png}, and slide file (as given) -> why
        it was skipped (a bad slide does not stop the others).
    """
    from tqdm.auto import tqdm

    from htd_plugins.discovery.stain import PatchNormalizer

    student = StudentClassifier.load(classifier)
    phenotypes = Phenotypes.load(clustering)
    if student.config.get("clustering_id") != phenotypes.clustering_id:
        raise InputError(
            f"classifier {classifier} was distilled from clustering {student.config.get('clustering_id')} "
            f"but {clustering} is {phenotypes.clustering_id}: use the clustering it was trained on"
        )
    options = GridOptions(
        read_mpp=float(student.config["read_mpp"]), patch_size=int(student.config["patch_size"]),
        stride=stride, min_tissue=min_tissue, slide_mpp=slide_mpp,
    )  # fmt: skip
    write_tree(out, phenotypes)
    written, skipped, names = {}, {}, {}
    for path in select_shard(slides, shard):
        try:
            slide, grid, coords = plan_slide(path, options)
            leaves = np.zeros(len(coords), np.int64)
            bar = tqdm(
                total=len(coords),
                desc=slide.slide_id,
                unit="patch",
                disable=not progress,
                file=sys.stderr,
            )
            at = 0
            stain = student.config.get("stain")
            normalize = (
                None if stain is None else PatchNormalizer.for_slide(stain, slide, grid.read_mpp)
            )
            dataset = PatchDataset(path, grid, coords, slide, normalize)
            for batch in patch_batches(dataset, batch_size, workers):
                leaves[at : at + len(batch)] = student.predict(
                    resize_uint8(batch, student.input_size)
                )
                at += len(batch)
                bar.update(len(batch))
            bar.close()
            source = f"classifier:{student.config.get('arch', ARCH)}@{student.input_size}"
            written[slide.slide_id] = write_slide_maps(
                out, slide.slide_id, grid, coords, leaves, phenotypes, source
            )
            draw_pictures(path, slide.slide_id, grid, written[slide.slide_id])
            names[slide.slide_id] = Path(path).name
        except HtdError as exc:
            skipped[str(path)] = str(exc)
        except Exception as exc:  # an unreadable region must not stop the other slides
            skipped[str(path)] = f"{type(exc).__name__}: {exc}"
    record_slide_ids(out, names)
    return written, skipped
