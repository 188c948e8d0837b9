"""The faiss k-means backend of the phenotype clustering (``backend="faiss"``)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.discovery.kmeans import BACKENDS, HierarchicalKMeans, KMeansOptions

pytest.importorskip("faiss", reason="faiss-cpu is in the dev extra (the faiss backend)")


def test_recovers_well_separated_clusters_from_a_float16_memmap(tmp_path, make_blobs):
    from sklearn.metrics import adjusted_rand_score

    sizes = [300, 220, 160, 120, 90, 60]
    x = make_blobs(sizes, dim=32, seed=7, spread=0.5)
    path = tmp_path / "x.f16"
    x.astype(np.float16).tofile(path)
    mm = np.memmap(path, np.float16, "r", shape=x.shape)
    model = HierarchicalKMeans(KMeansOptions(n_phenotypes=6, backend="faiss")).fit(mm)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    assert model.centers_.shape == (6, 32) and model.centers_.dtype == np.float32
    assert adjusted_rand_score(truth, model.predict(mm)) == pytest.approx(1.0)
    assert sorted(model.counts_.tolist()) == sorted(sizes)
    assert model.inertia_ == pytest.approx(model.inertia(mm), rel=1e-3)  # after the last pass
    assert model.swaps_ == 0 and set(model.coarse_) == {0}


def test_deterministic_for_a_seed(make_blobs):
    x = make_blobs([200, 150, 100, 80, 60, 40, 30, 20], dim=16, seed=3, spread=1.5)
    fit = lambda seed: HierarchicalKMeans(  # noqa: E731
        KMeansOptions(n_phenotypes=12, backend="faiss", seed=seed)
    ).fit(x)
    a, b, c = fit(1), fit(1), fit(2)
    np.testing.assert_array_equal(a.centers_, b.centers_)
    assert not np.array_equal(a.centers_, c.centers_)  # the seed is used


def test_bad_backend_and_missing_faiss(make_blobs, monkeypatch):
    with pytest.raises(InputError, match=r"backend='kmeans': use one of \['htd', 'faiss'\]"):
        KMeansOptions(backend="kmeans")
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss were not installed
    with pytest.raises(InputError, match="pip install faiss-cpu"):
        HierarchicalKMeans(KMeansOptions(n_phenotypes=2, backend="faiss")).fit(
            make_blobs([20, 20], dim=4)
        )


def test_cli_option_names_the_backends_and_records_the_choice(tmp_path, capsys):
    from htd_core.cli import main
    from tests.test_bad_inputs import store

    root = store(tmp_path / "store", nan_rows=())
    args = ["discover", "cluster", "--store", str(root), "--no-progress", "--phenotypes", "3",
            "--levels", "2,3", "--min-cluster-size", "2"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:  # argparse's exit, one line on stderr
        main([*args, "--out", str(tmp_path / "bad"), "--kmeans-backend", "sklearn"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--kmeans-backend" in err and "'sklearn'" in err and "'faiss'" in err
    assert not (tmp_path / "bad").exists()
    assert main([*args, "--out", str(tmp_path / "phen"), "--kmeans-backend", "faiss"]) == 0
    info = json.loads((tmp_path / "phen" / "tree.json").read_text())
    assert info["kmeans"]["backend"] == "faiss" and info["n_phenotypes"] == 3
    assert sorted(info["counts"]) == [20, 20, 20]  # the store's three clusters


def test_cli_choices_are_the_backends():
    import argparse

    from htd_plugins.commands.discover import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    stages = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    option = next(
        a for a in stages.choices["cluster"]._actions if "--kmeans-backend" in a.option_strings
    )
    assert tuple(option.choices) == BACKENDS and option.default == KMeansOptions().backend
