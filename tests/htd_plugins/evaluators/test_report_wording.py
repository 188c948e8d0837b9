"""`htd evaluate`'s report says what its numbers say: --limit draws from every source image,
scores at or below chance are flagged, and the autoencoder row's wording follows the FDs."""

from __future__ import annotations

import numpy as np
from PIL import Image

from htd_core.images import opaque_id
from htd_plugins.evaluation import open_set
from htd_plugins.evaluators.distance.section import autoencoder_lines
from htd_plugins.evaluators.segmentation.section import adherence_section, segmentation_section


def test_limit_draws_a_seeded_sample_spread_over_source_images(tmp_path, builtin_manager):
    root = tmp_path / "tiles"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for src in ("alpha", "beta", "gamma"):
        for r in range(4):
            name = f"{src}_r{r}_c0.png"
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "images" / name)
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / name)
    limited = open_set(root, limit=3, classes=["a", "b"])
    sources = {m["slide_id"] for m in limited.metas()}
    assert sources == {opaque_id(s) for s in ("alpha", "beta", "gamma")}  # not alpha's 3 tiles
    again = open_set(root, limit=3, classes=["a", "b"])
    assert [m["tile_id"] for m in again.metas()] == [m["tile_id"] for m in limited.metas()]
    assert len(open_set(root, classes=["a", "b"])) == 12


def _segmentation(mean_iou: float, chance: float) -> dict:
    setting = {"mean_iou": mean_iou, "mean_dice": mean_iou, "iou": {"a": mean_iou},
               "dice": {"a": mean_iou}, "pixel_accuracy": 0.5, "n_train": 4}  # fmt: skip
    return {"syn": {"classes": ["a"], "n_test": 4, "n_test_sources": 2, "chance_mean_iou": chance,
                    "budget": {"encoder": "e", "steps": 1, "batch_size": 2, "input_size": 16},
                    "settings": {"real": setting}}}  # fmt: skip


def test_scores_at_or_below_chance_are_flagged():
    text = segmentation_section(_segmentation(0.25, 0.31), None)
    assert "**At or below chance** (mean IoU 0.31" in text and "`syn` / real (0.25)" in text
    assert "At or below chance" not in segmentation_section(_segmentation(0.6, 0.31), None)
    part = {"mean_iou": 0.2, "n": 3, "iou": {"a": 0.2}}
    ok = {**part, "mean_iou": 0.7}
    base = {"classes": ["a"], "n_train": 4, "chance_mean_iou": 0.3,
            "budget": {"encoder": "e", "steps": 1, "batch_size": 2, "input_size": 16}}  # fmt: skip
    text = adherence_section(
        {"syn": {**base, "adherence": part, "ceiling": ok, "ratio": 0.3}}, None
    )
    assert "**At or below chance** for `syn`: adherence (0.3 by chance)" in text
    blind = adherence_section({"syn": {**base, "adherence": ok, "ceiling": part, "ratio": 3}}, None)
    assert "ceiling" in blind and "measures nothing here" in blind
    fine = adherence_section({"syn": {**base, "adherence": ok, "ceiling": ok, "ratio": 1}}, None)
    assert "At or below chance" not in fine


def test_the_autoencoder_rows_wording_follows_the_numbers():
    def results(fd: float, recon: float) -> dict:
        return {"syn": {"encoders": {"inception_fid": {"fd": fd, "fd_reconstruction": recon}}}}

    labels = {"inception_fid": "Inception"}
    below = "\n".join(autoencoder_lines(results(90.0, 120.0), labels))
    assert (
        "`syn` under Inception scores 90.0, at or below the autoencoder's reconstructions (120.0)"
        in below
    )
    assert "does not limit it" in below and "generation, not only" not in below
    above = "\n".join(autoencoder_lines(results(150.0, 120.0), labels))
    assert (
        "above the autoencoder's reconstructions (120.0)" in above and "does not limit" not in above
    )
    assert autoencoder_lines({"syn": {"encoders": {"x": {"fd": 1.0}}}}, labels) == []


def test_the_experiments_diagnostics_follow_the_numbers():
    from htd_plugins.experiment.results import autoencoder_reading
    from htd_plugins.experiment.summary import Estimate

    recon = Estimate(120.0, [110.0, 130.0])
    text = autoencoder_reading(recon, {"crop": Estimate(150.0, [140.0, 160.0]),
                                       "map": Estimate(125.0, [115.0, 135.0])})  # fmt: skip
    assert "crop lie above it" in text and "map reach the reconstruction row" in text
    assert "reach" not in autoencoder_reading(recon, {"crop": Estimate(150.0, [140.0, 160.0])})
    assert "No reconstruction row" in autoencoder_reading(Estimate(None), {})


def test_the_reconstruction_row_is_read_only_for_the_arms_its_autoencoder_decodes():
    from types import SimpleNamespace

    from htd_plugins.experiment.arms import ArmStages
    from htd_plugins.experiment.config import ARMS, Arm
    from htd_plugins.experiment.results import decoded

    arms = [Arm("crop", **ARMS["crop"]), Arm("collage", **ARMS["collage"]),
            Arm("crop_ae", ARMS["crop"]["builders"], options={"autoencoder": "/other/ae"})]  # fmt: skip
    run = SimpleNamespace(config=SimpleNamespace(arms=arms))
    by = ArmStages.decoders(run, {"path": "/run/autoencoder"})
    assert by == {"crop": "/run/autoencoder", "collage": None, "crop_ae": "/other/ae"}
    results = {"decoded_by": by, "autoencoder": {"path": "/run/autoencoder"}}
    shared, sentence = decoded(results, list(by))
    assert shared == ["crop"]
    assert "collage (no autoencoder)" in sentence and "crop_ae (its own autoencoder)" in sentence
    # a run written before decoded_by: every arm is read against the row, as it was
    assert decoded({"autoencoder": {"path": "/run/autoencoder"}}, list(by)) == (list(by), "")
