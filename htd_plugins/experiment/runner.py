"""``htd experiment``: the paper's tables, end to end, stage by stage, resumable.

Stages (each keyed by a hash of everything it depends on, recorded in ``OUT/stages/``; a rerun
reuses a finished stage whose key matches and redoes one whose inputs changed, and a killed
training or generation continues from its last checkpoint or written sample):

1. ``data``: both splits by source image (:mod:`.data`), written to ``OUT/data/``, and the
   crop bank of the training split (``OUT/data/crop-bank.safetensors``: every training
   patch's crops with their place in its source image, the reference crops of
   ``placement: outside``);
2. ``autoencoder``: one KL autoencoder trained on the training patches with the first seed,
   shared by every arm and seed (the same latents for all: the seeds measure the denoisers),
   ``OUT/autoencoder``;
3. ``train:<arm>@<seed>``: each arm's own denoiser per seed, same architecture and budget
   (``OUT/arms/<arm>/seed-<seed>/train``, its ``model/`` a saved pipeline; :mod:`.arms`);
4. ``generate:<arm>@<seed>``: one synthetic patch per training layout (mask of the train
   split, crops from the bank outside the layout's window), the same layouts for every arm;
5. evaluation (:mod:`.measure`): every evaluator of the file on every arm and seed through
   the one evaluation driver (the paper's: Frechet distance and KID against the held-out
   patches with real-vs-real and autoencoder rows, DeepLabv3+ trained on real / synthetic /
   real + synthetic, layout adherence, the privacy audit), with bootstrap resamples of the
   held-out patches, each result kept and reused while its inputs stay the same;
6. ``results.md``, ``results.json`` and ``figure.png`` (:mod:`.results`): every score as mean
   and 95 % interval over seeds and resamples, each ordering holds / tie / does not hold
   (:mod:`.summary`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from htd_plugins.experiment.arms import ArmStages, latent_arm
from htd_plugins.experiment.budgets import Budget, get_budget
from htd_plugins.experiment.config import ExperimentConfig, load_experiment
from htd_plugins.experiment.data import DataSource, ExperimentData
from htd_plugins.experiment.stages import Stages, stage_key

KIND = "experiment"
#: The reference crops of ``placement: outside`` (:data:`.config.CROPS` sizes): 96 px at
#: 0.5 um/px (the paper's d_base), two per training patch and class, every one kept.
BANK = {"size": 96, "min_size": 8, "per_sample": 2, "max_per_class": None, "max_fraction": 0.5}


class Experiment(ArmStages):
    """One experiment run (see the module docstring).

    Args:
        config: an experiment file, mapping or :class:`ExperimentConfig`.
        budget: a budget preset name overriding the file's.
        output_dir: the output folder overriding the file's.
        data_source: a callable returning :class:`ExperimentData` instead of the file's
            sampler (``htd demo`` uses its own data).
        log: where progress lines go (default: stderr).

    Raises:
        InputError / ConfigError: a bad file, budget, arm, evaluator option, model size or
            output folder, all before any data is read.
    """

    def __init__(self, config: str | Path | Mapping[str, Any] | ExperimentConfig, *,
                 budget: str | None = None, output_dir: str | Path | None = None,
                 data_source: DataSource | None = None,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        from htd_core.outputs import check_output

        self.config = config if isinstance(config, ExperimentConfig) else load_experiment(config)
        self.budget: Budget = get_budget(budget or self.config.budget, **self.config.budget_options)
        self.out = Path(output_dir) if output_dir else self.config.out_dir(self.budget.name)
        self.data_source = data_source
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.image_size = model_size(self.budget, self.config, data_source is not None)
        check_output(self.out, KIND, what="output folder")
        from htd_plugins.experiment.autoencoder import check_pretrained
        from htd_plugins.experiment.measure import evaluation_driver

        evaluation_driver(self, seed=self.config.seed).check()  # options, before any work
        check_pretrained(self.config)
        for arm in self.config.arms:  # builder, backbone and generation options too
            self.check_arm(arm)
        latent_arm(self.config.arms, str(self.config.source))  # one shares the autoencoder
        self.stages = Stages(self.out, self.log)
        self.data: ExperimentData | None = None
        self.data_key = self.bank_key = ""
        self.bank_path = self.out / "data" / "crop-bank.safetensors"

    def log(self, text: str) -> None:
        self._log(f"htd experiment [{time.strftime('%H:%M:%S')}] {text}")
        log_file = self.out / "log.txt"
        if log_file.parent.is_dir():
            with open(log_file, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    # -- stages ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage not done yet; returns the results (also in ``results.json``).

        The output folder is locked for the run; a new one that fails before any stage's
        result (its log aside) is removed whole (:func:`htd_core.outputs.output_folder`).

        Raises:
            InputError: another process is writing the output folder.
        """
        from htd_core.outputs import holds_more_than, output_folder

        with output_folder(self.out, KIND, has_results=holds_more_than("log.txt")):
            return self._run_stages()

    def _run_stages(self) -> dict[str, Any]:
        from htd_plugins.experiment.measure import evaluate_all
        from htd_plugins.experiment.results import write_results

        clock = time.monotonic()
        seeds = list(self.config.seeds)
        self.log(f"{self.config.name}: budget {self.budget.name}, {self.image_size} px, arms "
                 f"{[a.name for a in self.config.arms]}, seeds {seeds}, output {self.out}")  # fmt: skip
        if self.budget.preset == "paper" and not _cuda():
            self.log(f"warning: budget {self.budget.name!r} trains the paper-sized model "
                     f"({self.budget.steps} steps per arm) and no GPU was found: on CPU this "
                     "takes days; use --budget cpu or cpu-quick here")  # fmt: skip
        self.load_data()
        vae = self.autoencoder()
        trained: dict[str, dict[int, Any]] = {a.name: {} for a in self.config.arms}
        generated: dict[str, dict[int, Any]] = {a.name: {} for a in self.config.arms}
        for seed in seeds:  # every arm at the first seed before any second seed
            for arm in self.config.arms:
                trained[arm.name][seed] = self.train(arm, vae, seed)
                generated[arm.name][seed] = self.generate(arm, trained[arm.name][seed], seed)
        scores, diagnostics, drivers = evaluate_all(self, trained, generated)
        results = {
            "name": self.config.name, "config": self.config.source, "budget": self.budget.to_dict(),
            "image_size": self.image_size, "data": self.data.description if self.data else "",
            "data_key": self.data_key, "crop_bank": self.bank_summary, "autoencoder": vae,
            "seeds": seeds, "arms": trained, "generated": generated, "scores": scores,
            "diagnostics": diagnostics, "loss_weighting": self.loss_weighting(),
            "decoded_by": self.decoders(vae),
            "wall_minutes_this_call": round((time.monotonic() - clock) / 60, 2),
        }  # fmt: skip
        paths = write_results(self, results, drivers)
        self.log(f"done: {paths['results_md']}")
        return {**results, "paths": paths}

    def load_data(self) -> ExperimentData:
        """Stage ``data``: sample (always: cheap and deterministic), write when changed, and
        build the training split's crop bank."""
        from htd_plugins.experiment.data import sample_splits, write_splits

        b = self.budget
        if self.data_source is not None:
            data = self.data_source()
        else:
            where = f"{self.config.source}: data"
            data = sample_splits(self.config.data, self.image_size, b.max_train, b.n_test,
                                 self.config.seed, where)  # fmt: skip
        self.data, self.data_key = data, data.fingerprint()
        self.log(f"data: {data.description}")
        self.check_crop_sources(data)
        if self.stages.get("data", self.data_key) is None:
            write_splits(data, self.out / "data")
            self.stages.put("data", self.data_key, {"description": data.description,
                            "n_train": len(data.train), "n_test": len(data.test)})  # fmt: skip
        self.crop_bank()
        return data

    def crop_bank(self) -> None:
        """The training split's crop bank (:data:`BANK`), written when the data changed."""
        from htd_plugins.condition_builders import CropBank

        self.bank_key = stage_key("crop-bank", self.data_key, BANK, self.config.seed)
        done = self.stages.get("crop-bank", self.bank_key)
        if done is None or not self.bank_path.is_file():
            bank = CropBank.from_samples(self.data.train, seed=self.config.seed, **BANK)
            bank.save(self.bank_path)
            done = self.stages.put("crop-bank", self.bank_key, {
                "path": str(self.bank_path), "crops": bank.counts(), "options": BANK})  # fmt: skip
        self.bank_summary = done
        self.log(f"crop bank: {done['crops']} crops per class")

    def check_crop_sources(self, data: ExperimentData) -> None:
        """``placement: outside`` needs each training patch's source (and, to use crops of the
        same source, its window there): refuse data that cannot serve it, before training.

        Raises:
            ConfigError: an arm places crops ``outside`` and the training patches record no
                source id, or a single source without windows (nowhere to draw from).
        """
        from htd_core.errors import ConfigError
        from htd_core.splits import sample_source
        from htd_plugins.condition_builders import window_of

        outside = [a.name for a in self.config.arms if "outside" in a.placements()]
        if not outside:
            return
        sources = {sample_source(s.meta) for s in data.train}
        windows = sum(window_of(s.meta, s.size) is not None for s in data.train)
        if "" in sources or (len(sources) < 2 and not windows):
            what = "no source id" if "" in sources else "one source and no window in it"
            raise ConfigError(
                f"{self.config.source}: arms {outside}: placement: outside draws each crop from "
                f"the target's source image outside its window, but the training patches "
                f"record {what} (slide_id; tile_id, x, y): use a sampler that records them "
                f"(e.g. tiles) or placement: elsewhere"
            )

    def autoencoder(self) -> dict[str, Any]:
        """Stage ``autoencoder`` (:func:`.autoencoder.shared_autoencoder`)."""
        from htd_plugins.experiment.autoencoder import shared_autoencoder

        return shared_autoencoder(self)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def model_size(budget: Budget, config: ExperimentConfig, own_data: bool) -> int:
    """The model's patch side: the budget's ``image_size``, or (None: native) the data's
    ``patch_size``. Patches are cut at native resolution and only ever downscaled to it.

    Raises:
        ConfigError: ``image_size`` above the data's ``patch_size`` (an upsampling factor
            above 1), or a native budget whose data gives no ``patch_size``.
    """
    from htd_core.errors import ConfigError

    data = config.data or {}
    sizes = {(data.get("options") or {}).get("patch_size")}
    sizes |= {(data.get(p) or {}).get("patch_size") for p in ("train", "test") if data.get(p)}
    sizes = {int(s) for s in sizes if isinstance(s, int | float) and not isinstance(s, bool)}
    native = min(sizes) if sizes else None
    if budget.image_size is None:
        if native is None:
            raise ConfigError(
                f"{config.source}: budget {budget.name!r} runs at the data's native patch size, "
                "but data.options gives no patch_size: set data.options.patch_size or "
                "budget_options.image_size"
            )
        return native
    if native is not None and not own_data and budget.image_size > native:
        raise ConfigError(
            f"{config.source}: budget {budget.name!r} image_size={budget.image_size} is larger "
            f"than data.options.patch_size={native}: the patches would be upsampled "
            f"x{budget.image_size / native:.2f}; cut larger patches (patch_size >= "
            f"{budget.image_size}) or set budget_options.image_size <= {native}"
        )
    return int(budget.image_size)


def run_experiment(
    config: str | Path | Mapping[str, Any] | ExperimentConfig, **kwargs: Any
) -> dict[str, Any]:
    """Build an :class:`Experiment` (same arguments) and run it."""
    return Experiment(config, **kwargs).run()
