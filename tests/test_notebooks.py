"""The notebooks of examples/: committed without outputs, and the walkthrough runs end to end
(sample -> train -> generate -> look -> evaluate) on its ``tiny`` budget."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").rglob("*.ipynb"))
WALKTHROUGH = ROOT / "examples" / "walkthrough.ipynb"


def test_there_is_a_walkthrough():
    assert WALKTHROUGH in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    """Outputs stay out of git (they are large, machine-specific and go stale)."""
    nbformat = pytest.importorskip("nbformat", reason="the dev extra's nbformat is not installed")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]  # fmt: skip
    assert dirty == [], f"{path.name}: cells {dirty} hold outputs: clear them before committing"


def test_walkthrough_runs_on_the_tiny_budget(tmp_path, monkeypatch):
    from htd_core.data import shared_data_dir

    if shared_data_dir() is None or not (shared_data_dir() / "glas").is_dir():
        pytest.skip("the walkthrough reads GlaS from the shared data folder, which is absent")
    nbformat = pytest.importorskip("nbformat", reason="the dev extra's nbformat is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra's nbclient is not installed")
    pytest.importorskip("ipykernel", reason="the dev extra's ipykernel is not installed")
    for key, value in {"HTD_NOTEBOOK_BUDGET": "tiny", "HTD_THREADS": "1",
                       "HF_HUB_OFFLINE": "1", "HTD_SHARED_DATA": str(shared_data_dir())}.items():  # fmt: skip
        monkeypatch.setenv(key, value)  # the kernel inherits them
    nb = nbformat.read(WALKTHROUGH, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    out = tmp_path / "runs" / "walkthrough"
    assert (out / "model" / "pipeline.yaml").is_file()
    assert (out / "look.png").is_file()
    assert len((out / "synthetic" / "manifest.csv").read_text().splitlines()) == 1 + 4
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in shown), "the look step showed no image"
    text = "".join(o.get("text", "") for o in shown)
    assert "FD of the generated images" in text
