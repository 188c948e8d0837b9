"""``htd experiment``: the paper's tables, end to end, stage by stage, resumable.

Stages (each keyed by a hash of everything it depends on, recorded in ``OUT/stages/``; a rerun
reuses a finished stage whose key matches and redoes one whose inputs changed, and a killed
training or generation continues from its last checkpoint or written sample):

1. ``data``: both splits by source image (:mod:`.data`), written to ``OUT/data/``;
2. ``autoencoder``: one KL autoencoder trained on the training patches, shared by every arm
   (the same latents for all), ``OUT/autoencoder``;
3. ``train:<arm>``: each arm's own denoiser, same architecture, budget and seed
   (``OUT/arms/<arm>/train``, its ``model/`` a saved pipeline);
4. ``generate:<arm>``: one synthetic patch per training layout (mask and crops from the train
   split, crops placed ``elsewhere``), the same layouts and seeds for every arm;
5. evaluation (:mod:`.measure`): every evaluator of the file through the one evaluation
   driver (the paper's: Frechet distance and KID against the held-out patches with
   real-vs-real and autoencoder rows, DeepLabv3+ trained on real / synthetic / real +
   synthetic and scored on the held-out patches, the privacy audit), each result kept and
   reused while its inputs stay the same;
6. ``results.md``, ``results.json`` and ``figure.png`` (:mod:`.results`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from htd_plugins.experiment.budgets import Budget, get_budget
from htd_plugins.experiment.config import Arm, ExperimentConfig, load_experiment
from htd_plugins.experiment.data import DataSource, ExperimentData
from htd_plugins.experiment.stages import Stages, own_folder, stage_key

KIND = "experiment"


class Experiment:
    """One experiment run (see the module docstring).

    Args:
        config: an experiment file, mapping or :class:`ExperimentConfig`.
        budget: a budget preset name overriding the file's.
        output_dir: the output folder overriding the file's.
        data_source: a callable returning :class:`ExperimentData` instead of the file's
            sampler (``htd demo`` uses its own data).
        log: where progress lines go (default: stderr).

    Raises:
        InputError / ConfigError: a bad file, budget, arm, evaluator option or output folder,
            all before any data is read.
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
        check_output(self.out, KIND, what="output folder")
        from htd_plugins.experiment.measure import evaluation_driver

        evaluation_driver(self).check()  # evaluator options, before any work
        for arm in self.config.arms:  # builder, backbone and generation options too
            self.check_arm(arm)
        self.stages = Stages(self.out, self.log)
        self.data: ExperimentData | None = None
        self.data_key = ""

    def log(self, text: str) -> None:
        self._log(f"htd experiment [{time.strftime('%H:%M:%S')}] {text}")
        log_file = self.out / "log.txt"
        if log_file.parent.is_dir():
            with open(log_file, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    # -- stages ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage not done yet; returns the results (also in ``results.json``)."""
        from htd_core.dataset import Dataset
        from htd_core.outputs import start_output
        from htd_plugins.experiment.measure import crop_fidelity, evaluate_all
        from htd_plugins.experiment.results import write_results

        clock = time.monotonic()
        start_output(self.out, KIND, what="output folder")
        self.log(f"{self.config.name}: budget {self.budget.name}, arms "
                 f"{[a.name for a in self.config.arms]}, output {self.out}")  # fmt: skip
        self.load_data()
        vae = self.autoencoder()
        trained = {arm.name: self.train(arm, vae) for arm in self.config.arms}
        generated = {arm.name: self.generate(arm, trained[arm.name]) for arm in self.config.arms}
        sets = {a: list(Dataset(g["path"])) for a, g in generated.items()}
        scores, driver = evaluate_all(self, trained, generated, sets)
        diagnostics = {}
        if "crop" in sets:
            diagnostics["crop_fidelity"] = crop_fidelity(self.layouts(), sets)
        results = {
            "name": self.config.name, "config": self.config.source, "budget": self.budget.to_dict(),
            "data": self.data.description if self.data else "", "data_key": self.data_key,
            "autoencoder": vae, "arms": trained, "generated": generated, "scores": scores,
            "diagnostics": diagnostics, "seed": self.config.seed,
            "wall_minutes_this_call": round((time.monotonic() - clock) / 60, 2),
        }  # fmt: skip
        paths = write_results(self, results, driver)
        self.log(f"done: {paths['results_md']}")
        return {**results, "paths": paths}

    def load_data(self) -> ExperimentData:
        """Stage ``data``: sample (always: cheap and deterministic) and write when changed."""
        from htd_plugins.experiment.data import sample_splits, write_splits

        b = self.budget
        if self.data_source is not None:
            data = self.data_source()
        else:
            where = f"{self.config.source}: data"
            data = sample_splits(self.config.data, b.image_size, b.max_train, b.n_test,
                                 self.config.seed, where)  # fmt: skip
        self.data, self.data_key = data, data.fingerprint()
        self.log(f"data: {data.description}")
        if self.stages.get("data", self.data_key) is None:
            write_splits(data, self.out / "data")
            self.stages.put("data", self.data_key, {"description": data.description,
                            "n_train": len(data.train), "n_test": len(data.test)})  # fmt: skip
        return data

    def autoencoder(self) -> dict[str, Any]:
        """Stage ``autoencoder``: trained once on the training patches, shared by every arm
        (``LatentBackbone.train_autoencoder`` of the first arm's backbone; resumable)."""
        import numpy as np

        from htd_core.interfaces import LatentBackbone
        from htd_core.plugins import create

        b, seed = self.budget, self.config.seed
        adversarial = (
            [b.vae_adversarial_weight, b.vae_adversarial_start] if b.vae_adversarial_weight else []
        )
        key = stage_key("autoencoder", self.data_key, b.preset, b.image_size, b.vae_steps, seed,
                        *adversarial)  # fmt: skip
        folder = self.out / "autoencoder"
        done = self.stages.get("autoencoder", key)
        if done is not None and (folder / "config.json").is_file():
            return done
        work = self.out / "work" / "autoencoder"
        own_folder(work, key)
        work.mkdir(parents=True, exist_ok=True)
        arm = self.config.arms[0]
        backbone = create("backbones", arm.backbone, preset=b.preset, image_size=b.image_size,
                          **{**self.config.model, **arm.options})  # fmt: skip
        if not isinstance(backbone, LatentBackbone):
            from htd_core.errors import ConfigError

            raise ConfigError(f"{self.config.source}: arm {arm.name!r}: backbone "
                              f"{arm.backbone!r} has no autoencoder to share")  # fmt: skip
        images = np.stack([s.image for s in self.data.train])
        self.log(f"autoencoder: {b.vae_steps} steps on {len(images)} training patches")
        summary = backbone.train_autoencoder(
            images, checkpoint=work / "checkpoint.pt", steps=b.vae_steps, seed=seed,
            checkpoint_every=max(1, b.checkpoint_every), adversarial_weight=b.vae_adversarial_weight,
            adversarial_start=b.vae_adversarial_start,
        )  # fmt: skip
        test = np.stack([s.image for s in self.data.test])
        error = np.abs(backbone.reconstruct(test).astype(np.float64) - test).mean()
        summary["reconstruction_mae_test"] = round(float(error), 3)
        summary["steps_per_second"] = round(summary["steps"] / max(summary["seconds"], 1e-9), 3)
        backbone.autoencoder.save(folder)
        self.log(
            f"autoencoder: mean L1 on held-out patches {summary['reconstruction_mae_test']}/255"
        )
        return self.stages.put("autoencoder", key, {**summary, "path": str(folder), "key": key})

    def arm_key(self, arm: Arm, vae: Mapping[str, Any]) -> str:
        b = self.budget
        return stage_key("train", vae["key"], arm.name, arm.builders, arm.backbone, arm.options,
                         b.preset, b.image_size, b.steps, b.batch_size, self.config.model,
                         self.config.fit, self.config.seed)  # fmt: skip

    def build_pipeline(self, arm: Arm, vae: Mapping[str, Any], classes: Any = ...) -> Any:
        """A fresh pipeline for ``arm`` on the shared autoencoder (``classes``: the data's
        class names by default; None builds it before the data is read, to check options)."""
        from htd_core.config import ComponentSpec
        from htd_core.pipeline import Pipeline
        from htd_core.plugins import create, get_registry

        if classes is ...:
            classes = list(self.data.train[0].class_map.names)
        reg = get_registry("condition_builders")
        builders = [
            ComponentSpec.parse(b, f"{self.config.source}: arms.{arm.name}.builders[{i}]").create(
                reg, {"classes": classes, "seed": self.config.seed}
            )
            for i, b in enumerate(arm.builders)
        ]
        b = self.budget
        options = {"preset": b.preset, "image_size": b.image_size, "autoencoder": vae["path"],
                   **self.config.model, **arm.options}  # fmt: skip
        return Pipeline(
            condition_builders=builders, backbone=create("backbones", arm.backbone, **options)
        )

    def check_arm(self, arm: Arm) -> None:
        """Build the arm's pipeline and resolve the budget's generation options with it, so a
        bad builder, backbone or generation option fails before any data is read."""
        from htd_core.errors import ConfigError, HtdError

        pipe = self.build_pipeline(arm, {"path": None}, classes=None)
        try:
            pipe.generation_options(**self.budget.generation(self.config.seed))
        except HtdError as exc:
            raise ConfigError(
                f"{self.config.source}: arm {arm.name!r}: the budget's generation options "
                f"(budget_options.guidance_scale / scheduler / num_inference_steps): {exc}"
            ) from None

    def train(self, arm: Arm, vae: Mapping[str, Any]) -> dict[str, Any]:
        """Stage ``train:<arm>``: the arm's own model (resumes from its last checkpoint)."""
        key = self.arm_key(arm, vae)
        name = f"train:{arm.name}"
        folder = self.out / "arms" / arm.name / "train"
        done = self.stages.get(name, key)
        if done is not None and Path(done["model_dir"]).is_dir():
            return done
        own_folder(folder, key)
        pipe = self.build_pipeline(arm, vae)
        b = self.budget
        self.log(f"{name}: {b.steps} steps ({arm.backbone}, builders {arm.builders})")
        options = {"steps": b.steps, "seed": self.config.seed, "checkpoint_every": b.checkpoint_every,
                   "batch_size": b.batch_size, **self.config.fit}  # fmt: skip
        summary = pipe.fit(self.data.train, output_dir=str(folder), **options)
        keep = ("steps", "seconds", "steps_per_second", "final_loss", "model_dir", "resumed_from")
        result = {k: summary.get(k) for k in keep if k in summary}
        self.log(f"{name}: {result.get('steps')} steps, {result.get('steps_per_second')} steps/s")
        return self.stages.put(name, key, {**result, "key": key})

    def layouts(self) -> list[Any]:
        """The training layouts every arm generates from (seeded; cycled when more are asked)."""
        import numpy as np

        train = self.data.train
        n = self.budget.n_synthetic or len(train)
        order = np.random.default_rng(self.config.seed + 7).permutation(len(train)).tolist()
        return [train[order[i % len(train)]] for i in range(n)]

    def generate(self, arm: Arm, trained: Mapping[str, Any]) -> dict[str, Any]:
        """Stage ``generate:<arm>``: writes ``OUT/arms/<arm>/synthetic`` (resumes per sample),
        keyed by the generation options it passes (the budget's), so changing them
        regenerates; records the options the pipeline resolved and used."""
        from tqdm import tqdm

        from htd_core.dataset import Dataset, DatasetWriter
        from htd_core.generation import GENERATION_COLUMNS
        from htd_core.pipeline import Pipeline

        layouts = self.layouts()
        asked = self.budget.generation(self.config.seed)
        key = stage_key("generate", trained["key"], len(layouts), asked)
        name = f"generate:{arm.name}"
        folder = self.out / "arms" / arm.name / "synthetic"
        done = self.stages.get(name, key)
        if done is not None and folder.is_dir():
            return done
        own_folder(folder, key)
        pipe = Pipeline.from_pretrained(trained["model_dir"])
        options = pipe.generation_options(**asked)
        self.log(f"{name}: {len(layouts)} patches from training layouts, {options.scheduler} "
                 f"{options.num_inference_steps} steps, guidance {options.guidance_scale}")  # fmt: skip
        t0 = time.monotonic()
        with DatasetWriter(folder, layouts[0].class_map, GENERATION_COLUMNS) as writer:
            start = len(writer)
            if start:
                self.log(f"{name}: resuming at sample {start} of {len(layouts)}")
            bar = tqdm(total=len(layouts), initial=start, desc=name, unit="img", file=sys.stderr)
            for sample in pipe.iter_generate(layouts, options, start=start):
                writer.write(sample)
                bar.update(1)
            bar.close()
        used = sorted({float(r["guidance_scale"]) for r in Dataset(folder).rows})
        result = {"path": str(folder), "n": len(layouts), "key": key,
                  "seconds": round(time.monotonic() - t0, 1), "options": options.to_dict(),
                  "guidance_used": used}  # fmt: skip
        return self.stages.put(name, key, result)


def run_experiment(
    config: str | Path | Mapping[str, Any] | ExperimentConfig, **kwargs: Any
) -> dict[str, Any]:
    """Build an :class:`Experiment` (same arguments) and run it."""
    return Experiment(config, **kwargs).run()
