"""The experiment file: one YAML names a real dataset, its split, the arms, a budget and the
evaluators (see ``examples/experiments/*.yaml`` and docs/results.md).

.. code-block:: yaml

    name: glas
    data:
      sampler: tiles                      # any registered patch sampler
      options: {root: ${HTD_SHARED_DATA}/glas, patch_size: 160, stride: 64,
                rule: heterogeneous, mpp: 0.9}
      train: {split: train}               # sampler options of the training split
      test: {split: test}                 # ... and of the held-out split
    arms: [unconditional, semantic_map, embedding, crop]
    budget: cpu-quick                     # a preset of htd_plugins.experiment.budgets
    budget_options: {}                    # fields of the budget to override
    evaluators: [frechet, deeplabv3plus, layout_adherence, privacy]   # any registered
                                          # evaluator, or {name: ..., **options}
    seeds: [0, 1, 2]                      # each arm trained and sampled once per seed
    figure: {rows: 8, autoencoders: {TAEF2: ../shared/weights/taef2}}   # figure.png's
                                          # layouts and extra autoencoder round trips

An arm is a name of :data:`ARMS` (the paper's conditions) or of a registered condition
builder (trained alone), or a mapping ``{name, builders, backbone, options}``. Every arm gets
the same backbone architecture, budget, seeds, autoencoder and layouts; only the condition
differs. ``seeds`` (or one ``seed``) are the training and sampling seeds of each arm; the data,
the layouts, the crop bank and the shared autoencoder use the first (docs/results.md says why).
``${NAME}`` is expanded; paths starting with ``./`` or ``../`` are relative to the file (in a
value given with ``-o``, to the working folder).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from htd_core.errors import ConfigError

#: How the experiment's crop arms pick crops: from the training split's crop bank (the runner
#: passes it as ``bank``), from the target's own source image but outside its window, else
#: another training source (:mod:`htd_plugins.condition_builders.crops.references`), at most
#: half the patch side (a larger square cannot lie in a class region covering 20-80 % of the
#: patch, the heterogeneous rule of the paper's Sec. 3), down to 8 px (at 64 px, WSSS4LUAD's
#: strands hold no 16 px square in 43 % of class instances).
CROPS: dict[str, Any] = {"placement": "outside", "max_fraction": 0.5, "min_size": 8}
#: The paper's arms (Table 1 / Table 2 columns) and ablations. ``crop`` is the method:
#: semantic map + one real crop per class (:data:`CROPS`); ``embedding`` gives the same draws
#: as encoder embeddings (cross-attention tokens) of the whole bank crop, each embedded once
#: (``whole_crop``: the squares placed from a crop rarely repeat, so the encoder ran on
#: nearly every one); ``semantic_map`` is the map alone (what the crops add is crop vs map);
#: ``unconditional`` is a model of its own with no condition (not the null branch of a
#: conditioned model). ``crop_elsewhere`` is the old placement (cut from
#: the target, moved), an ablation of the copy shortcut; ``concat_ldm`` another backbone;
#: ``collage`` the training-free reference (each class region tiled with the crop arm's crops,
#: no model: what copy-paste augmentation gives); ``crop_v_prediction`` and ``crop_min_snr``
#: the crop arm with v-prediction or Min-SNR-5 loss weighting (Hang et al. 2023). Every arm
#: outside the paper's four is read against ``crop`` (:mod:`.ablation`).
_CROP = ["semantic_map", {"name": "crop", **CROPS}]  # the method's builders
ARMS: dict[str, dict[str, Any]] = {
    "crop": {"builders": _CROP},
    "embedding": {"builders": ["semantic_map", {"name": "embedding", "encoder": "efficientnet_lite0",
                                                "normalize": True, "whole_crop": True,
                                                "crop_options": dict(CROPS)}]},
    "unconditional": {"builders": ["unconditional"]},
    "semantic_map": {"builders": ["semantic_map"]},
    "crop_elsewhere": {"builders": ["semantic_map", {"name": "crop", "placement": "elsewhere",
                                                     "min_size": 8, "max_fraction": 0.5}]},
    "concat_ldm": {"builders": _CROP, "backbone": "concat_ldm"},
    "collage": {"builders": _CROP, "backbone": "collage"},
    "crop_v_prediction": {"builders": _CROP, "options": {"prediction_type": "v_prediction"}},
    "crop_min_snr": {"builders": _CROP, "fit": {"snr_gamma": 5.0}},
}  # fmt: skip
DEFAULT_ARMS = ("unconditional", "semantic_map", "embedding", "crop")
#: The paper's measurements, run when the file names no evaluators.
DEFAULT_EVALUATORS = ("frechet", "deeplabv3plus", "layout_adherence", "privacy")
#: The experiment's protocol for evaluators it knows (the file's own options win; a budget's
#: ``evaluators`` options come between): KID beside FD (less biased at a few hundred images),
#: 200 bootstrap resamples of the test images for every interval (:mod:`.summary`), the
#: privacy audit in EfficientNet-Lite0's space (real ImageNet weights, ~14x fewer FLOPs than
#: the FID Inception; it embeds every real patch and its crop windows).
EVALUATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "frechet": {"kid": True, "kid_subsets": 50, "bootstrap": 200},
    "deeplabv3plus": {"bootstrap": 200},
    "layout_adherence": {"bootstrap": 200},
    "privacy": {"encoder": "efficientnet_lite0"},
}
KEYS = ("name", "data", "arms", "budget", "budget_options", "evaluators", "encoders", "seeds",
        "seed", "model", "fit", "figure", "output_dir")  # fmt: skip
DATA_KEYS = ("sampler", "options", "train", "test")


@dataclass
class Arm:
    """One arm: its condition builders (component specs), backbone, backbone options and
    training options (``fit``: over the experiment's ``fit`` and the budget's steps, e.g.
    ``{"steps": 4000}`` or ``{"snr_gamma": 5}`` for an ablation arm)."""

    name: str
    builders: list[Any]
    backbone: str = "controlnet_ldm"
    options: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)

    def placements(self) -> list[str]:
        """The ``placement`` of every crop builder (``crop`` and ``embedding``'s
        ``crop_options``; the crop builder's default, ``elsewhere``, when unset)."""
        out = []
        for b in self.builders:
            if not isinstance(b, Mapping):
                out += ["elsewhere"] if b in ("crop", "embedding") else []
            elif b.get("name") == "crop":
                out.append(str(b.get("placement", "elsewhere")))
            elif b.get("name") == "embedding":
                out.append(str((b.get("crop_options") or {}).get("placement", "elsewhere")))
        return out


@dataclass
class ExperimentConfig:
    """A parsed, validated experiment file (see the module docstring)."""

    name: str
    data: dict[str, Any]
    arms: list[Arm]
    budget: str = "cpu-quick"
    budget_options: dict[str, Any] = field(default_factory=dict)
    evaluators: tuple[Any, ...] = DEFAULT_EVALUATORS
    encoders: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    model: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    figure: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None
    source: str = "<config>"

    @property
    def seed(self) -> int:
        """The first seed: the data, layouts, crop bank and shared autoencoder use it."""
        return self.seeds[0]

    def out_dir(self, budget: str | None = None) -> Path:
        """The output folder (default ``htd-output/experiments/<name>-<budget>``)."""
        return Path(
            self.output_dir or f"htd-output/experiments/{self.name}-{budget or self.budget}"
        )


def load_experiment(
    source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Read and check an experiment file (YAML path) or mapping.

    ``overrides`` replace top-level keys (``htd experiment -o arms=[crop,unconditional]``);
    a dotted key sets one entry of a mapping (``-o budget_options.steps=200``).

    Raises:
        ConfigError: a missing file, unknown keys (with the closest name), an arm that is
            neither a named arm (the paper's or an ablation) nor a registered condition builder
            (listing both), an unknown evaluator, or a malformed section; every message names
            the file and the key.
    """
    from htd_core.config import read_yaml_mapping, resolve_paths
    from htd_plugins.experiment.figure_options import figure_options
    from htd_plugins.experiment.file_values import check_budget_options, evaluators_of, seeds_of

    if isinstance(source, Mapping):
        raw, label, base = dict(source), "<experiment>", None
    else:
        raw = read_yaml_mapping(source, "experiment file", ", ".join(KEYS))
        label, base = str(source), Path(source).parent
    raw = dict(raw)
    given_by_o = {str(key).partition(".")[0] for key in overrides or {}}

    def at(key: str) -> str:  # where a section's value came from: the file, or -o
        return f"{label} (-o {key})" if key in given_by_o else label

    for key, value in (overrides or {}).items():  # its paths are the shell's: relative to cwd
        value = resolve_paths(value, Path.cwd(), f"{label}: -o {key}")
        top, dot, sub = str(key).partition(".")
        if dot:
            inner = raw.get(top) or {}
            if not isinstance(inner, Mapping):
                raise ConfigError(f"{label}: -o {key}: {top} is not a mapping")
            raw[top] = {**inner, sub: value}
        else:
            raw[top] = value
    _known(raw, KEYS, f"{label}: key", f"{label}:")
    data = raw.get("data")
    if not isinstance(data, Mapping) or "sampler" not in data:
        raise ConfigError(
            f"{at('data')}: data: give a mapping with sampler, options, train and test (the sampler "
            "options of each split)"
        )
    _known(data, DATA_KEYS, f"{at('data')}: data key", "data:")
    for key in ("options", "train", "test"):
        if not isinstance(data.get(key, {}), Mapping):
            raise ConfigError(f"{at('data')}: data.{key}: expected a mapping of sampler options")
    data = resolve_paths(dict(data), base, f"{label}: data")
    name = str(raw.get("name") or (Path(label).stem if base is not None else "experiment"))
    given = raw.get("arms") or DEFAULT_ARMS
    given = [given] if isinstance(given, str | Mapping) else given  # -o arms=crop: one arm
    given = resolve_paths(given, base, f"{at('arms')}: arms")  # e.g. an arm's autoencoder
    arms = [_arm(a, f"{at('arms')}: arms[{i}]") for i, a in enumerate(given)]
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(
            f"{at('arms')}: arms: {twice} listed twice (got {names}); list each arm once"
        )
    evaluators = evaluators_of(
        raw.get("evaluators") or DEFAULT_EVALUATORS, f"{at('evaluators')}: evaluators"
    )
    for key in ("budget_options", "model", "fit"):
        if not isinstance(raw.get(key, {}), Mapping):
            raise ConfigError(f"{at(key)}: {key}: expected a mapping")
    seeds = seeds_of(raw, at("seeds") if "seeds" in given_by_o else at("seed"))
    check_budget_options(raw.get("budget_options") or {}, at("budget_options"))
    figure = figure_options(raw.get("figure") or {}, base, at("figure"))
    out = raw.get("output_dir")
    return ExperimentConfig(
        name=name, data=data, arms=arms, budget=str(raw.get("budget") or "cpu-quick"),
        budget_options=dict(raw.get("budget_options") or {}), evaluators=evaluators,
        encoders=tuple(raw.get("encoders") or ()), seeds=seeds,
        model=resolve_paths(dict(raw.get("model") or {}), base, f"{at('model')}: model"),
        fit=dict(raw.get("fit") or {}), figure=figure, output_dir=None if out is None else str(out),
        source=label,
    )  # fmt: skip


def _known(keys: Any, allowed: tuple[str, ...], what: str, listing: str) -> None:
    """Refuse a key not in ``allowed``, with the closest name and the list."""
    from htd_core.registry import suggest

    for key in keys:
        if key not in allowed:
            raise ConfigError(
                f"{what} {key!r} unknown.{suggest(str(key), list(allowed))} {listing} "
                f"{', '.join(allowed)}"
            )


def _arm(value: Any, where: str) -> Arm:
    """An arm from a name or a mapping (see :data:`ARMS`)."""
    from htd_core.plugins import get_registry

    registered = get_registry("condition_builders").names()
    if isinstance(value, str):
        if value in ARMS:
            spec = ARMS[value]
            return Arm(value, copy.deepcopy(spec["builders"]), spec.get("backbone", "controlnet_ldm"),
                       dict(spec.get("options", {})), dict(spec.get("fit", {})))  # fmt: skip
        if value in registered:
            return Arm(value, [value])
        raise ConfigError(
            f"{where}: arm {value!r} is neither a named arm (the paper's and the ablations: "
            f"{', '.join(ARMS)}) nor a registered condition builder ({', '.join(registered)}); "
            "`htd plugins` lists the builders"
        )
    if isinstance(value, Mapping) and value.get("name") and value.get("builders"):
        unknown = set(value) - {"name", "builders", "backbone", "options", "fit"}
        if unknown:
            raise ConfigError(f"{where}: unknown arm keys {sorted(unknown)}")
        builders = value["builders"] if isinstance(value["builders"], list) else [value["builders"]]
        for b in builders:
            name = b if isinstance(b, str) else (b.get("name") if isinstance(b, Mapping) else None)
            if name not in registered:
                raise ConfigError(
                    f"{where}: condition builder {name!r} is not registered (registered: "
                    f"{', '.join(registered)})"
                )
        fit = value.get("fit") or {}
        if not isinstance(fit, Mapping):
            raise ConfigError(f"{where}: arm {value['name']!r}: fit must be a mapping of options")
        return Arm(str(value["name"]), list(builders), str(value.get("backbone", "controlnet_ldm")),
                   dict(value.get("options") or {}), dict(fit))  # fmt: skip
    raise ConfigError(
        f"{where}: give an arm name ({', '.join(ARMS)}) or {{name, builders, backbone, options, "
        "fit}"
    )
