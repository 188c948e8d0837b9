"""Pipeline: THE orchestrator. sampler -> condition builder(s) -> backbone -> evaluators,
composed in Python or from a YAML file of registered names, saved and loaded as one folder.

``htd train``, ``htd generate`` and ``htd demo`` are thin callers of this class, so there is
one training path and one generation loop (diffusers' pipelines are the model: components as
constructor arguments, ``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from htd_core.config import resolve_component
from htd_core.errors import ConfigError
from htd_core.generation import GenerationOptions
from htd_core.interfaces import Backbone, ComposedConditionBuilder, ConditionBuilder, Evaluator
from htd_core.plugins import PluginManager, get_plugin_manager
from htd_core.types import Condition, TissueSample

Component = Any  # an instance, a registered name, or {"name": ..., **options}

#: The output kind of a training run folder (``fit(output_dir=...)``, :mod:`htd_core.outputs`).
RUN_KIND = "training-run"


class Pipeline:
    """The stages of the method, each given as an object or by registered name.

    Args:
        sampler: a ``PatchSampler`` (training data for :meth:`fit`), or its name/spec.
        condition_builders: one builder or several, concatenated in order (the paper's dual
            condition is ``["semantic_map", "crop"]``).
        backbone: the generative model.
        evaluators: metrics for :meth:`evaluate`.
        stage_options: default keyword options of ``fit``, ``generate`` and ``evaluate``.
        manager: the plugin manager that resolves names (default: the process-wide one).

    Example:
        >>> Pipeline(sampler="tiles", condition_builders=["semantic_map", "crop"],
        ...          backbone="controlnet_ldm")  # doctest: +SKIP
    """

    def __init__(
        self,
        sampler: Component | None = None,
        condition_builders: Component | Sequence[Component] = (),
        backbone: Component | None = None,
        evaluators: Component | Sequence[Component] = (),
        *,
        stage_options: Mapping[str, Mapping[str, Any]] | None = None,
        manager: PluginManager | None = None,
    ) -> None:
        self.manager = manager or get_plugin_manager()
        self.sampler = self._resolve(sampler, "htd_register_patch_samplers", "sampler")
        builders = [
            self._resolve(c, "htd_register_condition_builders", f"condition_builders[{i}]")
            for i, c in enumerate(_as_list(condition_builders))
        ]
        self.condition_builder: ConditionBuilder | None = None
        if builders:
            single = len(builders) == 1
            self.condition_builder = builders[0] if single else ComposedConditionBuilder(builders)
        self.backbone = self._resolve(backbone, "htd_register_backbones", "backbone")
        self.evaluators: list[Evaluator] = [
            self._resolve(e, "htd_register_evaluators", f"evaluators[{i}]")
            for i, e in enumerate(_as_list(evaluators))
        ]
        self.stage_options = {k: dict(v) for k, v in (stage_options or {}).items()}

    @classmethod
    def from_config(
        cls, source: str | Path | Mapping[str, Any], manager: PluginManager | None = None
    ) -> Pipeline:
        """Build from a YAML file or mapping with sections ``sampler``, ``condition_builders``,
        ``backbone``, ``evaluators`` and stage options ``fit``, ``generate``, ``evaluate``.

        Raises:
            ConfigError: naming the file and key of any unknown section, name or option.
        """
        from htd_core.pipeline_files import read_pipeline_config

        return cls(**read_pipeline_config(source), manager=manager)

    def _resolve(self, value: Component | None, hook: str, where: str) -> Any:
        return (
            None if value is None else resolve_component(value, self.manager.registry(hook), where)
        )

    def _need(self, attr: str, stage: str) -> Any:
        value = getattr(self, attr)
        if value is None:
            raise ConfigError(
                f"pipeline stage {stage!r} needs a {attr.replace('_', ' ')}; none was given"
            )
        return value

    def samples(self, limit: int | None = None) -> Iterable[TissueSample]:
        """The sampler's samples (the first ``limit``)."""
        sampler = self._need("sampler", "samples")
        return sampler.take(limit) if limit is not None else iter(sampler)

    def build_conditions(self, samples: Iterable[TissueSample], seed: int = 0) -> list[Condition]:
        """The condition of each sample; sample ``i`` uses seed ``seed + i``."""
        builder: ConditionBuilder = self._need("condition_builder", "build_conditions")
        return [builder.build(s, seed=seed + i) for i, s in enumerate(samples)]

    def fit(self, samples: Iterable[TissueSample] | None = None, **options: Any) -> dict[str, Any]:
        """Train the backbone with the composed condition.

        Args:
            samples: the training split; default: everything the sampler yields. A
                :class:`~htd_core.shards.ShardDataset` is read as a stream (memory flat in
                the number of samples; each process of ``accelerate launch`` reads its own
                shards).
            **options: training options over ``stage_options["fit"]`` (the backbone's, e.g.
                ``steps``, ``max_minutes``, ``output_dir``; docs/backbones.md).

        Returns:
            The backbone's summary. With ``output_dir``, its ``model_dir`` is a saved pipeline
            folder that :meth:`from_pretrained` (and ``htd generate``) reads.

        Raises:
            InputError: ``output_dir`` is a file, not writable, or a folder holding anything but
                an htd training run (checked before any work, :mod:`htd_core.outputs`).

        Warns:
            EmptyClassWarning: a class of the samples' class list has no pixel in any of them.
            UserWarning: ``samples`` given while the pipeline's sampler re-expresses samples per
                step (``for_step``, e.g. the ``curriculum``): explicit samples train without it.
        """
        import contextlib

        from htd_core.coverage import ClassCoverage, warn_dropped_schedule, warn_empty_classes
        from htd_core.outputs import check_output, holds_more_than, output_folder
        from htd_core.training_data import TrainingData

        backbone: Backbone = self._need("backbone", "fit")
        builder = self._need("condition_builder", "fit")
        data = samples if samples is not None else self._need("sampler", "fit")
        if samples is not None:
            warn_dropped_schedule(self.sampler, samples)
        opts = {**self.stage_options.get("fit", {}), **options}
        run_dir = opts.get("output_dir")
        if run_dir:  # before any work: a file or a user's folder is never written into
            check_output(run_dir, RUN_KIND, what="output_dir", legacy=("checkpoints",))
        if isinstance(data, TrainingData):  # shards: counted when written, not read twice
            warn_empty_classes(data.class_pixels(), len(data), f"training data {data}")
            coverage = data
        else:
            coverage = ClassCoverage(data, "training samples")  # names classes no sample holds
        with (
            output_folder(
                run_dir,
                RUN_KIND,
                what="output_dir",
                legacy=("checkpoints",),
                has_results=holds_more_than("logs"),  # a checkpoint, the vae, the model
            )
            if run_dir
            else contextlib.nullcontext()
        ):
            summary = backbone.fit(coverage, builder, **opts)
        if isinstance(coverage, ClassCoverage):
            coverage.report()
        if summary.get("model_dir"):
            self._write_pipeline_file(Path(summary["model_dir"]))
        return summary

    def generation_options(
        self,
        options: GenerationOptions | Mapping[str, Any] | None = None,
        *,
        unconditional: bool = False,
        **given: Any,
    ) -> GenerationOptions:
        """THE place generation settings are decided (diffusers keeps them as call arguments).

        The caller's values (``options``, then keywords; ``None``: not given) over the
        pipeline's ``generate:`` defaults (saved in a model folder's ``pipeline.yaml``) over
        :class:`~htd_core.generation.GenerationOptions`' (``unconditional``: guidance 1, as a
        null condition is never guided); then :meth:`~htd_core.Backbone.check_generation`.
        :meth:`iter_generate` passes the result to the backbone and records it.

        Raises:
            InputError: an unknown option (closest name and the list), a bad value, guidance
                asked for with ``unconditional``, or a value the backbone cannot honour.
        """
        backbone: Backbone = self._need("backbone", "generate")
        base = options.to_dict() if isinstance(options, GenerationOptions) else options or {}
        asked = {k: v for k, v in {**base, **given}.items() if v is not None}
        resolved = GenerationOptions.layered(
            self.stage_options.get("generate"), asked, unconditional=unconditional
        )
        return backbone.check_generation(resolved, frozenset(asked))

    def iter_generate(
        self,
        layouts: Sequence[TissueSample],
        options: GenerationOptions | Mapping[str, Any] | None = None,
        *,
        start: int = 0,
        unconditional: bool = False,
        **given: Any,
    ) -> Iterator[TissueSample]:
        """Synthesize one sample per layout, in order, from layout ``start`` on (to resume).

        Layout ``i`` uses seed ``options.seed + i`` for its condition (crop choice) and its
        noise, so the result does not depend on ``start``; batches are ``options.batch_size``
        layouts counted from layout 0 (:func:`htd_core.generation.generate_samples`).

        Args:
            layouts: samples whose masks (and, for crops, images) condition the generation;
                ``image=None`` layouts need a crop source in the builders (a crop bank).
            options: generation options (or a mapping of some), resolved with ``given`` by
                :meth:`generation_options`; ``**given``: the same as keywords.
            start: the first layout to generate (earlier ones were written before).
            unconditional: use the null condition for every layout.

        Yields:
            TissueSample: the synthetic image, the layout's mask and class map, and the
            layout's meta plus what was used (``GENERATION_COLUMNS`` of
            :mod:`htd_core.generation`: seed, guidance as applied, scheduler, steps, crop
            provenance, the layout's and crops' opaque source ids).

        Raises:
            InputError: a bad option, a layout size the backbone cannot generate at, layouts
                of mixed sizes in one batch (all checked before the first image, at the call,
                :func:`~htd_core.generation.check_layouts`), or ``start`` < 0.
        """
        from htd_core.generation import check_layouts, generate_samples

        backbone: Backbone = self._need("backbone", "generate")
        builder = None if unconditional else self._need("condition_builder", "generate")
        opts = self.generation_options(options, unconditional=unconditional, **given)
        check_layouts(backbone, layouts, opts.batch_size)
        return generate_samples(backbone, builder, layouts, opts, start)

    def generate(
        self, layouts: Sequence[TissueSample], options: Any = None, **given: Any
    ) -> list[TissueSample]:
        """All of :meth:`iter_generate` as a list (same arguments)."""
        return list(self.iter_generate(layouts, options, **given))

    def evaluate(
        self, real: Sequence[TissueSample], synthetic: Sequence[TissueSample], **options: Any
    ) -> dict[str, dict[str, Any]]:
        """Each evaluator's metrics on ``synthetic`` against ``real`` (held-out samples marked
        ``meta["split"] == "test"``), keyed by evaluator name, through the one evaluation
        driver (:class:`htd_core.evaluation.EvaluationDriver`); ``options``: the driver's
        (``batch_size``, ``progress``...) over ``stage_options["evaluate"]``."""
        from htd_core.evaluation import EvaluationDriver

        if not self.evaluators:
            raise ConfigError("pipeline stage 'evaluate' needs at least one evaluator")
        opts = {"progress": False, **self.stage_options.get("evaluate", {}), **options}
        driver = EvaluationDriver(self.evaluators, manager=self.manager, **opts)
        results = driver.run(real, {"synthetic": synthetic})
        return {name: by_set["synthetic"] for name, by_set in results.items()}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the backbone's model folder (diffusers parts + ``htd_config.json``) and
        ``pipeline.yaml`` naming the condition builders and backbone by registered name.

        Like diffusers pipelines, a saved pipeline is what generation needs (no sampler, no
        evaluators); its ``generate:`` options are saved as the folder's generation
        *defaults*, which :meth:`generation_options` applies below the caller's own.

        Raises:
            ConfigError: a component was built by hand (no registered name and options) or
                has options YAML cannot hold (give paths, not objects, e.g. a crop bank path).
        """
        path = Path(path)
        text = self._pipeline_file_text()  # refuse unsavable components before any weight
        self._need("backbone", "save_pretrained").save(path)
        self._write_pipeline_file(path, text)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        condition_builders: Component | Sequence[Component] | None = None,
        builder_options: Mapping[str, Any] | None = None,
        device: str | None = None,
        manager: PluginManager | None = None,
    ) -> Pipeline:
        """Load a folder written by :meth:`save_pretrained` (or ``htd train``).

        Args:
            condition_builders: override the saved builders (e.g. another pipeline YAML's).
            builder_options: options given to every builder that accepts them and does not set
                them, e.g. ``{"bank": "crops.safetensors"}`` to generate from layouts without
                images.
            device: torch device of the backbone (default: its saved option).

        Raises:
            InputError: ``path`` is not a saved pipeline; ConfigError: unknown names in it.
        """
        from htd_core.pipeline_files import read_pipeline_folder

        parts = read_pipeline_folder(path, condition_builders=condition_builders,
                                     builder_options=builder_options, device=device,
                                     manager=manager or get_plugin_manager())  # fmt: skip
        return cls(**parts)

    def _pipeline_file_text(self) -> str:
        from htd_core.pipeline_files import pipeline_file_text

        backbone = self._need("backbone", "save_pretrained")
        builder = self._need("condition_builder", "save_pretrained")
        return pipeline_file_text(backbone, builder, self.stage_options.get("generate"))

    def _write_pipeline_file(self, folder: Path, text: str | None = None) -> None:
        from htd_core.io import atomic_write_text
        from htd_core.pipeline_files import PIPELINE_FILE

        atomic_write_text(folder / PIPELINE_FILE, text or self._pipeline_file_text())


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]
