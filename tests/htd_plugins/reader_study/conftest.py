"""Fixtures for the reader study: small image folders, a made study, a live local server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htd_plugins.reader_study.db import StudyDB, open_study
from htd_plugins.reader_study.sampling import ImageSet, create_study


def write_images(folder: Path, n: int, prefix: str, size: int = 24, seed: int = 0) -> list[Path]:
    """``n`` random RGB PNGs named ``{prefix}_{i:03d}.png`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def image_dirs(tmp_path: Path) -> dict[str, Path]:
    """A real folder (8 images named like slides) and a synthetic folder (8 images)."""
    real = tmp_path / "real"
    syn = tmp_path / "synthetic_model"
    write_images(real, 8, "TCGA-SECRET-slide", seed=1)
    write_images(syn, 8, "generated-SECRET", seed=2)
    return {"real": real, "synthetic": syn}


@pytest.fixture
def make_study(tmp_path: Path, image_dirs: dict[str, Path]) -> Callable[..., StudyDB]:
    """``make_study(n=10, name="study")``: a study of real vs one set named ``zebra_model``."""

    def _make(n: int = 10, name: str = "study", seed: int = 0) -> StudyDB:
        sets = [
            ImageSet("real", "real", image_dirs["real"]),
            ImageSet("zebra_model", "synthetic", image_dirs["synthetic"]),
        ]
        create_study(tmp_path / name, sets, n, seed)
        return open_study(tmp_path / name)

    return _make


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """``live_server(study_dir, require_token=False)`` serves in a thread on 127.0.0.1 and a
    free port; returns the base URL. Shut down at teardown."""
    from htd_plugins.reader_study.server import make_server

    running = []

    def _start(study_dir: Path, require_token: bool = False) -> str:
        server, _, _ = make_server(study_dir, "127.0.0.1", 0, require_token)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.port}"

    yield _start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def study_cli(htd_manager, register_plugin) -> Callable[[list[str]], int]:
    """``study_cli([...])`` runs ``htd reader-study ...`` in-process with only this plugin."""
    import htd_plugins.commands.reader_study as mod
    from htd_core.cli import main

    register_plugin(mod, "cmd_reader_study")
    return lambda argv: main(["reader-study", *map(str, argv)])


def planned_answers(study: StudyDB) -> dict[str, dict[str, tuple[str, int]]]:
    """The answers two readers give on a 10-image study (5 real, 5 synthetic), from its key.

    ``ana`` calls the first two synthetic images (study order) real and the first real image
    synthetic, all quality 3: 7/10 correct. ``ben`` is always right, quality 4 for real and 2
    for synthetic: 10/10.
    """
    rows = [(a, b) for a, b in _key(study)]
    reals = [i for i, t in rows if t == "real"]
    syns = [i for i, t in rows if t == "synthetic"]
    assert len(reals) == len(syns) == 5
    wrong = {syns[0], syns[1], reals[0]}
    flip = {"real": "synthetic", "synthetic": "real"}
    ana = {i: (flip[t] if i in wrong else t, 3) for i, t in rows}
    ben = {i: (t, 4 if t == "real" else 2) for i, t in rows}
    return {"ana": ana, "ben": ben}


def _key(study: StudyDB) -> list[tuple[str, str]]:
    with study.conn() as c:
        return [tuple(r) for r in c.execute("SELECT id, truth FROM images ORDER BY position")]


def check_planned_report(rep: dict) -> None:
    """The report of :func:`planned_answers`, computed by hand (see test_stats for the
    formulas): Clopper-Pearson 7/10 = [0.3475, 0.9333], exact binomial p, kappa, U."""
    ana, ben, pooled = rep["readers"]["ana"], rep["readers"]["ben"], rep["pooled"]
    assert (ana["accuracy"]["k"], ana["accuracy"]["n"]) == (7, 10)
    assert ana["accuracy"]["ci95"] == pytest.approx([0.3475, 0.9333], abs=1e-4)
    assert ana["accuracy"]["p_value_vs_50"] == pytest.approx(0.34375)
    assert (ana["sensitivity"]["k"], ana["sensitivity"]["n"]) == (3, 5)
    assert (ana["specificity"]["k"], ana["specificity"]["n"]) == (4, 5)
    assert ana["indistinguishable"] is True
    assert (ben["accuracy"]["k"], ben["accuracy"]["n"]) == (10, 10)
    assert ben["accuracy"]["ci95"] == pytest.approx([0.6915, 1.0], abs=1e-4)
    assert ben["accuracy"]["p_value_vs_50"] == pytest.approx(2 / 1024)
    assert ben["sensitivity"]["estimate"] == 1.0 and ben["specificity"]["estimate"] == 1.0
    assert ben["indistinguishable"] is False
    assert (pooled["accuracy"]["k"], pooled["accuracy"]["n"]) == (17, 20)
    assert pooled["accuracy"]["ci95"] == pytest.approx([0.6211, 0.9679], abs=1e-4)
    assert pooled["accuracy"]["p_value_vs_50"] == pytest.approx(2 * 1351 / 2**20)
    assert (pooled["sensitivity"]["k"], pooled["specificity"]["k"]) == (8, 9)
    assert pooled["indistinguishable"] is False
    assert pooled["detection_by_set"]["zebra_model"]["k"] == 8
    q = rep["quality"]
    assert q["real"]["counts"] == {"1": 0, "2": 0, "3": 5, "4": 5, "5": 0}
    assert q["zebra_model"]["counts"] == {"1": 0, "2": 5, "3": 5, "4": 0, "5": 0}
    assert q["real"]["mean"] == pytest.approx(3.5) and q["zebra_model"]["mean"] == pytest.approx(
        2.5
    )
    mw = rep["quality_tests"]["mann_whitney_u"]["zebra_model"]
    assert mw["u"] == pytest.approx(87.5) and (mw["n_x"], mw["n_y"]) == (10, 10)
    assert rep["agreement"] == {"n_readers": 2, "n_images": 10,
                                "fleiss_kappa": pytest.approx(0.195 / 0.495)}  # fmt: skip
