"""``htd experiment``: the paper's tables reproduced end to end on real data.

One YAML (:mod:`.config`) names a real dataset and its split by source image, the arms (crop,
embedding, unconditional, ...), a budget preset (:mod:`.budgets`) and the evaluators; the
runner (:mod:`.runner`) trains one shared autoencoder and each arm's own model with the same
budget and seed, generates from the same training layouts, scores every arm against the
held-out patches with every evaluator of the file (:mod:`.measure`, through the one evaluation
driver) and writes ``results.md`` / ``results.json`` /
``figure.png`` (:mod:`.results`). Every stage resumes.

>>> from htd_plugins.experiment import run_experiment
>>> results = run_experiment("examples/experiments/glas.yaml", budget="cpu-quick")  # doctest: +SKIP
"""

from htd_plugins.experiment.ablation import steps_curve, steps_curve_lines
from htd_plugins.experiment.budgets import BUDGETS, Budget, get_budget
from htd_plugins.experiment.config import ARMS, ExperimentConfig, load_experiment
from htd_plugins.experiment.data import ExperimentData, sample_splits
from htd_plugins.experiment.runner import Experiment, run_experiment
from htd_plugins.experiment.set_size import set_size_lines, set_size_rows

__all__ = [
    "ARMS",
    "BUDGETS",
    "Budget",
    "Experiment",
    "ExperimentConfig",
    "ExperimentData",
    "get_budget",
    "load_experiment",
    "run_experiment",
    "sample_splits",
    "set_size_lines",
    "set_size_rows",
    "steps_curve",
    "steps_curve_lines",
]
