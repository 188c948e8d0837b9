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

from htd_core.config import ComponentSpec, component_list, load_config, resolve_component, spec_of
from htd_core.errors import ConfigError, InputError
from htd_core.interfaces import Backbone, ComposedConditionBuilder, ConditionBuilder, Evaluator
from htd_core.plugins import PluginManager, get_plugin_manager
from htd_core.splits import CROP_SOURCES, LAYOUT_SOURCE, crop_sources, layout_source
from htd_core.types import CROP_PROVENANCE, Condition, TissueSample

Component = Any  # an instance, a registered name, or {"name": ..., **options}

#: ``Condition.meta`` key of a null condition's (H, W) in pixels: the size of the layout it
#: stands for (a backbone generates at that size instead of its default).
NULL_SIZE = "size"

#: The file of a saved pipeline that names its components (a pipeline YAML itself).
PIPELINE_FILE = "pipeline.yaml"
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
        data, label = load_config(source)
        sampler, backbone = data.get("sampler"), data.get("backbone")
        return cls(
            sampler=ComponentSpec.parse(sampler, f"{label}: sampler") if sampler else None,
            condition_builders=component_list(
                data.get("condition_builders"), f"{label}: condition_builders"
            ),
            backbone=ComponentSpec.parse(backbone, f"{label}: backbone") if backbone else None,
            evaluators=component_list(data.get("evaluators"), f"{label}: evaluators"),
            stage_options={k: data[k] for k in ("fit", "generate", "evaluate") if k in data},
            manager=manager,
        )

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

    # -- stages -------------------------------------------------------------------------
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
            samples: the training split; default: everything the sampler yields.
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
        """
        import contextlib

        from htd_core.coverage import ClassCoverage
        from htd_core.outputs import check_output, output_folder

        backbone: Backbone = self._need("backbone", "fit")
        builder = self._need("condition_builder", "fit")
        data = samples if samples is not None else self._need("sampler", "fit")
        opts = {**self.stage_options.get("fit", {}), **options}
        run_dir = opts.get("output_dir")
        if run_dir:  # before any work: a file or a user's folder is never written into
            check_output(run_dir, RUN_KIND, what="output_dir", legacy=("checkpoints",))
        coverage = ClassCoverage(data, "training samples")  # names classes no sample holds
        with (
            output_folder(run_dir, RUN_KIND, what="output_dir", legacy=("checkpoints",))
            if run_dir
            else contextlib.nullcontext()
        ):
            summary = backbone.fit(coverage, builder, **opts)
        coverage.report()
        if summary.get("model_dir"):
            self._write_pipeline_file(Path(summary["model_dir"]))
        return summary

    def iter_generate(
        self,
        layouts: Sequence[TissueSample],
        *,
        seed: int = 0,
        start: int = 0,
        batch_size: int | None = None,
        unconditional: bool = False,
        **options: Any,
    ) -> Iterator[TissueSample]:
        """Synthesize one sample per layout, in order, from layout ``start`` on (to resume).

        Layout ``i`` uses seed ``seed + i`` for its condition (crop choice) and its noise, so
        the result does not depend on ``start``; batches are ``batch_size`` layouts (default:
        the backbone's ``batch_size`` option) counted from layout 0.

        Args:
            layouts: samples whose masks (and, for crops, images) condition the generation;
                ``image=None`` layouts need a crop source in the builders (a crop bank).
            unconditional: use the null condition for every layout.
            **options: generation options over ``stage_options["generate"]``
                (``guidance_scale``, ``scheduler``, ``num_inference_steps``).

        Yields:
            TissueSample with the synthetic image, the layout's mask and class map, and meta:
            the layout's meta plus ``seed``, ``guidance_scale``, :data:`CROP_PROVENANCE`
            (the crops' sources, sizes and positions; None when no crop was used) and the
            opaque source ids of the layout (``layout_source_id``) and of its crops
            (``crop_source_ids``), which ``htd evaluate`` checks against the held-out set.
        """
        backbone: Backbone = self._need("backbone", "generate")
        builder = None if unconditional else self._need("condition_builder", "generate")
        opts = {**self.stage_options.get("generate", {}), **options}
        size = int(batch_size or opts.pop("batch_size", None) or _option(backbone, "batch_size", 8))
        guidance = opts.get("guidance_scale")
        guidance = _option(backbone, "guidance_scale", 1.0) if guidance is None else guidance
        if size < 1 or start < 0:
            raise InputError(f"batch_size={size} must be >= 1 and start={start} >= 0")
        first = start - start % size
        for begin in range(first, len(layouts), size):
            chunk = list(range(max(begin, start), min(begin + size, len(layouts))))
            conditions = [
                # a null condition keeps the layout's size, so the image matches its mask
                Condition(meta={NULL_SIZE: tuple(layouts[i].mask.shape[:2])})
                if builder is None
                else builder.build(layouts[i], seed=seed + i)
                for i in chunk
            ]
            images = backbone.generate(conditions, seed=seed + chunk[0], batch_size=size, **opts)
            for i, image, cond in zip(chunk, images, conditions, strict=True):
                layout = layouts[i]
                prov = cond.meta.get(CROP_PROVENANCE)
                meta = {**layout.meta, "seed": seed + i, "guidance_scale": guidance,
                        CROP_PROVENANCE: prov, LAYOUT_SOURCE: layout_source(layout.meta),
                        CROP_SOURCES: crop_sources(prov)}  # fmt: skip
                yield TissueSample(image, layout.mask, layout.class_map, meta)

    def generate(self, layouts: Sequence[TissueSample], **options: Any) -> list[TissueSample]:
        """All of :meth:`iter_generate` as a list (same arguments)."""
        return list(self.iter_generate(layouts, **options))

    def evaluate(
        self, real: Sequence[TissueSample], synthetic: Sequence[TissueSample]
    ) -> dict[str, dict[str, Any]]:
        """Each evaluator's metrics, keyed by evaluator name."""
        if not self.evaluators:
            raise ConfigError("pipeline stage 'evaluate' needs at least one evaluator")
        return {ev.name: ev.evaluate(real, synthetic) for ev in self.evaluators}

    # -- persistence --------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the backbone's model folder (diffusers parts + ``htd_config.json``) and
        ``pipeline.yaml`` naming the condition builders and backbone by registered name.

        The sampler and evaluators are not saved: like diffusers pipelines, a saved pipeline
        is what generation needs.

        Raises:
            ConfigError: a component was built by hand (no registered name and options) or
                has options YAML cannot hold (give paths, not objects, e.g. a crop bank path).
        """
        path = Path(path)
        self._pipeline_file_text()  # refuse unsavable components before writing weights
        self._need("backbone", "save_pretrained").save(path)
        self._write_pipeline_file(path)
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
        path = Path(path)
        file = path / PIPELINE_FILE
        if not file.is_file():
            raise InputError(
                f"{path} is not a saved pipeline (no {PIPELINE_FILE}): give the model folder "
                "`htd train` or Pipeline.save_pretrained wrote"
            )
        manager = manager or get_plugin_manager()
        data, label = load_config(file, relative_to_file=False)  # paths as saved
        backbone_spec = ComponentSpec.parse(data.get("backbone"), f"{label}: backbone")
        factory = resolve_factory(manager, "htd_register_backbones", backbone_spec)
        if not callable(getattr(factory, "load", None)):
            raise ConfigError(f"{label}: backbone {backbone_spec.name!r} has no load()")
        backbone = factory.load(path, device=device)
        specs = (
            component_list(data.get("condition_builders"), f"{label}: condition_builders")
            if condition_builders is None
            else _as_list(condition_builders)
        )
        registry = manager.registry("htd_register_condition_builders")
        builders = [
            resolve_component(s, registry, f"{label}: condition_builders[{i}]", builder_options)
            for i, s in enumerate(specs)
        ]
        return cls(condition_builders=builders, backbone=backbone, manager=manager)

    def _pipeline_file_text(self) -> str:
        import yaml

        backbone = self._need("backbone", "save_pretrained")
        builder = self._need("condition_builder", "save_pretrained")
        parts = getattr(builder, "builders", [builder])
        data = {
            "backbone": {"name": backbone.name},
            "condition_builders": [spec_of(b, "condition builder").to_config() for b in parts],
        }
        try:
            return yaml.safe_dump(data, sort_keys=False)
        except yaml.representer.RepresenterError as exc:
            raise ConfigError(
                f"cannot save the pipeline: a condition builder option is an object "
                f"({exc.args[-1]!r}); give it as a path or plain value"
            ) from None

    def _write_pipeline_file(self, folder: Path) -> None:
        from htd_core.io import atomic_write_text

        atomic_write_text(folder / PIPELINE_FILE, self._pipeline_file_text())


def pipeline_id(path: str | Path) -> str:
    """Content hash (SHA-256, 16 hex digits) of a saved pipeline folder: every file's path
    relative to the folder and its bytes (weights, configs, ``pipeline.yaml``), in name order;
    hidden files and the output marker are left out. The same model gives the same id wherever
    the folder lies; retrained or edited weights give another (``htd generate`` keys resumes on
    it, ``htd evaluate`` its cached reconstructions).

    Raises:
        InputError: ``path`` is not a saved pipeline folder.
    """
    import hashlib

    from htd_core.io import MARKER

    root = Path(path)
    if not (root / PIPELINE_FILE).is_file():
        raise InputError(f"{root} is not a saved pipeline (no {PIPELINE_FILE})")
    digest = hashlib.sha256()
    files = sorted(
        f for f in root.rglob("*")
        if f.is_file() and f.name != MARKER
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    )  # fmt: skip
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def resolve_factory(manager: PluginManager, hook: str, spec: ComponentSpec) -> Any:
    """The registered factory of ``spec.name`` (a ConfigError naming ``spec.where`` if none)."""
    from htd_core.errors import RegistryError

    try:
        return manager.registry(hook).entry(spec.name).factory
    except RegistryError as exc:
        raise ConfigError(f"{spec.where}.name: {exc}") from None


def _option(backbone: Backbone, key: str, default: Any) -> Any:
    options = getattr(backbone, "options", None) or {}
    return options.get(key, default)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]
