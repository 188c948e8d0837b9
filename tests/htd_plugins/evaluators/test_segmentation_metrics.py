"""DeepLabv3+ scores from MONAI's confusion-matrix metric equal the confusion-matrix formula
(numpy bincount over all labelled test pixels, float64) on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_plugins.evaluators.segmentation import metrics
from htd_plugins.evaluators.segmentation.metrics import ConfusionScores, score_predictions

IGNORE = 255


def reference(preds: torch.Tensor, labels: torch.Tensor, k: int, ignore: int) -> dict:
    """The project's definition, written independently: one K x K bincount of the labelled
    pixels, per-class IoU and Dice of its TP / FP / FN, None for classes absent from labels."""
    t = labels.numpy().astype(np.int64).ravel()
    keep = t != ignore
    p = np.clip(preds.numpy().astype(np.int64).ravel()[keep], 0, k - 1)
    cm = np.bincount(t[keep] * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = cm.sum(1) > 0
    return {
        "iou": [tp[i] / (tp[i] + fp[i] + fn[i]) if present[i] else None for i in range(k)],
        "dice": [2 * tp[i] / (2 * tp[i] + fp[i] + fn[i]) if present[i] else None for i in range(k)],
        "pixel_accuracy": tp.sum() / cm.sum() if cm.sum() else None,
        "confusion": cm.tolist(),
        "present": present.tolist(),
    }


def assert_same(new: dict, ref: dict, tol: float = 1e-9) -> None:
    assert new["confusion"] == ref["confusion"] and new["present"] == ref["present"]
    for key in ("iou", "dice"):
        assert [v is None for v in new[key]] == [v is None for v in ref[key]], key
        for a, b in zip(new[key], ref[key], strict=True):
            assert a is None or abs(a - b) <= tol, (key, a, b)
    assert abs(new["pixel_accuracy"] - ref["pixel_accuracy"]) <= tol


def random_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """5 classes; labels use 0..2 (3 and 4 absent), 20 % ignored; predictions never say 4,
    say 3 (absent from the labels) often, and never get class 2 right."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (6, 64, 64), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = IGNORE
    preds = torch.randint(0, 4, (6, 64, 64), generator=g)
    ones = labels == 1
    preds[ones] = torch.where(torch.rand(int(ones.sum()), generator=g) < 0.7, 1, 2)
    preds[labels == 2] = 0
    return preds, labels


def test_random_predictions_with_ignored_absent_and_unpredicted_classes() -> None:
    preds, labels = random_case()
    scores = score_predictions(preds, labels, num_classes=5, ignore_index=IGNORE)
    ref = reference(preds, labels, 5, IGNORE)
    assert_same(scores, ref)
    assert scores["iou"][2] == 0.0 and scores["iou"][3:] == [None, None]
    assert sum(map(sum, scores["confusion"])) == int((labels != IGNORE).sum()) == 19650


def test_batches_and_chunks_add_up_to_one_matrix(monkeypatch) -> None:
    """Streaming over batches, and MONAI counting in small chunks, give the one-shot scores."""
    preds, labels = random_case(seed=1)
    whole = score_predictions(preds, labels, num_classes=5, ignore_index=IGNORE)
    monkeypatch.setattr(metrics, "CHUNK", 1000)
    streamed = ConfusionScores(5, IGNORE)
    for i in range(0, len(preds), 4):
        streamed.update(preds[i : i + 4], labels[i : i + 4])
    assert streamed.aggregate() == whole
    streamed.reset()
    assert streamed.aggregate()["pixel_accuracy"] is None


def test_negative_ignore_index_and_bad_labels() -> None:
    preds, labels = random_case(seed=2)
    labels[labels == IGNORE] = -1
    assert_same(
        score_predictions(preds, labels, num_classes=5, ignore_index=-1),
        reference(preds, labels, 5, -1),
    )
    with pytest.raises(ValueError, match=r"labels \[7\].*ignore index 255"):
        score_predictions(preds, torch.full_like(labels, 7), num_classes=5, ignore_index=IGNORE)


def test_real_predictions_of_a_tiny_deeplab_on_glas(shared_data) -> None:
    """Predictions of a DeepLabv3+ trained briefly on real GlaS tiles, with a border of
    ignored pixels: the same numbers as the bincount formula."""
    if not (shared_data / "glas" / "images").is_dir():
        pytest.skip(f"no GlaS tiles in {shared_data / 'glas'}")
    from htd_core.testing import real_tiles
    from htd_plugins.evaluators.segmentation.training import (
        Budget,
        predict,
        resize_pair,
        train_model,
    )

    pairs = [resize_pair(s.image, s.mask, 64) for s in real_tiles(shared_data, "glas", n=12)]
    images, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    budget = Budget(steps=6, input_size=64, batch_size=4, lr=3e-3, encoder="tu-test_resnet",
                    pretrained=False)  # fmt: skip
    model, _ = train_model(
        [(images[:8], masks[:8])], num_classes=2, ignore_index=IGNORE, budget=budget, seed=0
    )
    preds = predict(model, images[8:])
    labels = torch.from_numpy(masks[8:].astype(np.int64))
    labels[:, :4] = IGNORE
    scores = score_predictions(preds, labels, num_classes=2, ignore_index=IGNORE)
    assert_same(scores, reference(preds, labels, 2, IGNORE))
    assert sum(map(sum, scores["confusion"])) == 4 * 60 * 64


def test_per_image_confusions_add_up_and_the_bootstrap_follows_its_contract() -> None:
    """Per-image counts sum to the test set's matrix; a resample holding every image once
    gives the point estimate; resamples depend on (seed, n) only, the first rows not on B."""
    from htd_core.bootstrap import interval, resample_indices
    from htd_plugins.evaluators.segmentation import bootstrap
    from htd_plugins.evaluators.segmentation.metrics import summarise

    preds, labels = random_case(seed=3)
    scores = score_predictions(preds, labels, num_classes=5, ignore_index=IGNORE)
    per_image = bootstrap.image_confusions(preds, labels, 5, IGNORE)
    assert per_image.shape == (6, 5, 5) and per_image.sum(0).tolist() == scores["confusion"]
    point = summarise(scores, tuple("abcde"))["mean_iou"]
    assert bootstrap.mean_iou(per_image.sum(0)) == pytest.approx(point, abs=1e-12)
    first = resample_indices(0, 6, 50)
    assert (first == resample_indices(0, 6, 50)).all()
    assert (resample_indices(0, 6, 10) == first[:10]).all()
    assert not (resample_indices(1, 6, 50) == first).all()
    assert resample_indices(0, 7, 50).shape == (50, 7)
    samples = bootstrap.bootstrap_mean_iou(per_image, seed=0, b=50)
    for row, value in zip(first, samples, strict=True):  # each sample is its resample's score
        assert value == pytest.approx(bootstrap.mean_iou(per_image[row].sum(0)), abs=1e-12)
    lo, hi = interval(samples)
    assert lo <= point <= hi and lo < hi
    assert bootstrap.bootstrap_mean_iou(per_image, seed=0, b=0).shape == (0,)
