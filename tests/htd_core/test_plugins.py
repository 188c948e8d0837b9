"""Plugin loading: isolation of broken plugins, blocking, misspelled hooks, duplicates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from htd_core import Condition, ConditionBuilder, hookimpl
from htd_core.errors import PluginError
from htd_core.plugins import PluginManager


class Builder(ConditionBuilder):
    def channels(self, class_map):
        return ()

    def build(self, sample, *, seed=None):
        return Condition()


class GoodPlugin:
    @hookimpl
    def htd_register_condition_builders(self, registry):
        registry.register("good", Builder)


class RaisingPlugin:
    @hookimpl
    def htd_register_condition_builders(self, registry):
        registry.register("half_done", Builder)
        raise RuntimeError("boom in hook")


class MisspelledPlugin:
    @hookimpl
    def htd_register_condition_builder(self, registry):  # missing "s"
        registry.register("never", Builder)


class DuplicatePlugin:
    @hookimpl
    def htd_register_condition_builders(self, registry):
        registry.register("good", Builder)


def test_register_by_hand(htd_manager, register_plugin):
    register_plugin(GoodPlugin(), "goodplug")
    assert htd_manager.condition_builders.names() == ["good"]
    info = {i.name: i for i in htd_manager.plugin_infos()}["goodplug"]
    assert info.status == "ok" and info.components == [("condition builder", "good")]


def test_raising_hook_is_isolated_and_rolled_back(htd_manager, register_plugin):
    register_plugin(RaisingPlugin(), "raiser")
    register_plugin(GoodPlugin(), "goodplug")
    assert htd_manager.condition_builders.names() == ["good"]  # half_done rolled back
    info = {i.name: i for i in htd_manager.plugin_infos()}["raiser"]
    assert info.status == "broken" and "boom in hook" in info.error


def test_misspelled_hook_is_rejected(htd_manager):
    with pytest.raises(PluginError, match="htd_register_condition_builder"):
        htd_manager.register(MisspelledPlugin(), "typo")


def test_duplicate_component_marks_second_plugin_broken(htd_manager, register_plugin):
    register_plugin(GoodPlugin(), "aaa_first")
    register_plugin(DuplicatePlugin(), "zzz_second")
    infos = {i.name: i for i in htd_manager.plugin_infos()}
    assert infos["aaa_first"].status == "ok"
    assert infos["zzz_second"].status == "broken"
    assert "aaa_first" in infos["zzz_second"].error and "zzz_second" in infos["zzz_second"].error


def test_blocked_by_name():
    manager = PluginManager(autoload=False, disabled={"goodplug"})
    manager.register(GoodPlugin(), "goodplug")
    assert manager.condition_builders.names() == []
    assert manager.plugin_infos()[0].status == "blocked"


def test_unknown_disabled_name_warns_with_the_closest_plugin():
    from htd_core.plugins import DisabledPluginWarning

    manager = PluginManager(disabled={"crpo", "semantic_map"})
    with pytest.warns(DisabledPluginWarning, match=r"'crpo', which is no installed.*'crop'") as w:
        manager.load_entry_points()
    assert len(w) == 1  # semantic_map is a real plugin: blocked, no warning
    assert manager.infos["semantic_map"].status == "blocked"


def test_component_of_a_blocked_plugin_says_it_is_blocked():
    from htd_core.errors import UnknownComponentError

    manager = PluginManager(disabled={"crop"})
    with pytest.raises(UnknownComponentError, match="'crop' is blocked by HTD_DISABLED_PLUGINS"):
        manager.condition_builders.entry("crop")
    with pytest.raises(UnknownComponentError, match=r"Available: .*\(blocked by HTD_DISABLED"):
        manager.condition_builders.entry("crap")


def fake_distribution(root: Path, name: str, module_source: str, hook_source: str = "") -> None:
    """A minimal installed distribution (dist-info + module) on a sys.path folder."""
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[htd]\n{name} = {name}_mod\n")
    (root / f"{name}_mod.py").write_text(textwrap.dedent(module_source))


def run_htd(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "htd_core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    fake_distribution(
        tmp_path, "htdbroken", "raise ImportError('cannot import torchvision.nope')\n"
    )
    fake_distribution(
        tmp_path,
        "htdextra",
        """
        from htd_core import ConditionBuilder, Condition, hookimpl

        class Extra(ConditionBuilder):
            def channels(self, class_map):
                return ()

            def build(self, sample, *, seed=None):
                return Condition()

        @hookimpl
        def htd_register_condition_builders(registry):
            registry.register("extra", Extra)


        from htd_core import Command

        class Hello(Command):
            help = "greet a lab (a verb from a pip-installed plugin)"

            def add_arguments(self, parser):
                parser.add_argument("--lab", default="world")

            def run(self, args):
                print(f"hello {args.lab}")
                return 0

        @hookimpl
        def htd_register_commands(registry):
            registry.register("hello", Hello)
        """,
    )
    return tmp_path


def test_broken_entry_point_is_isolated_cli(plugin_dir):
    proc = run_htd("plugins", "--json", env_extra={"PYTHONPATH": str(plugin_dir)})
    assert proc.returncode == 0, proc.stderr
    infos = {i["name"]: i for i in json.loads(proc.stdout)}
    assert infos["htdbroken"]["status"] == "broken"
    assert "cannot import torchvision.nope" in infos["htdbroken"]["error"]
    assert infos["htdextra"]["status"] == "ok"
    assert infos["htdextra"]["distribution"] == "htdextra" and infos["htdextra"]["version"] == "0.1"
    for builtin in ("semantic_map", "unconditional"):
        assert infos[builtin]["status"] == "ok"


def test_installed_plugin_adds_a_verb(plugin_dir):
    """A third-party distribution adds ``htd hello`` without editing any shared file."""
    env = {"PYTHONPATH": str(plugin_dir)}
    help_text = run_htd("--help", env_extra=env)
    assert help_text.returncode == 0, help_text.stderr
    assert "hello" in help_text.stdout and "greet a lab" in help_text.stdout
    assert "sample" in help_text.stdout  # built-in verbs are plugins too
    ran = run_htd("hello", "--lab", "pathology", env_extra=env)
    assert ran.returncode == 0 and ran.stdout.strip() == "hello pathology"
    blocked = run_htd("hello", env_extra={**env, "HTD_DISABLED_PLUGINS": "htdextra"})
    assert blocked.returncode == 2 and "invalid choice: 'hello'" in blocked.stderr


def test_blocked_entry_point_cli(plugin_dir):
    proc = run_htd(
        "plugins",
        env_extra={"PYTHONPATH": str(plugin_dir), "HTD_DISABLED_PLUGINS": "htdextra, htdbroken"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert lines["htdextra"].rstrip().endswith("blocked")
    assert lines["htdbroken"].rstrip().endswith("blocked")
    assert lines["semantic_map"].rstrip().endswith("ok")


def test_builtin_plugins_load(builtin_manager):
    assert {"semantic_map", "unconditional"} <= set(builtin_manager.condition_builders.names())


class EveryKindPlugin:
    """One tiny component per extension point, to exercise each hook end to end."""

    @hookimpl
    def htd_register_condition_builders(self, registry):
        registry.register("k_builder", Builder)

    @hookimpl
    def htd_register_commands(self, registry):
        registry.register("k-command", _classes()["Command"])

    @hookimpl
    def htd_register_backbones(self, registry):
        registry.register("k_backbone", _classes()["Backbone"])

    @hookimpl
    def htd_register_patch_samplers(self, registry):
        registry.register("k_sampler", _classes()["PatchSampler"])

    @hookimpl
    def htd_register_evaluators(self, registry):
        registry.register("k_evaluator", _classes()["Evaluator"])

    @hookimpl
    def htd_register_encoders(self, registry):
        registry.register("k_encoder", _classes()["Encoder"])


def _classes() -> dict[str, type]:
    import numpy as np

    import htd_core
    from htd_core import Backbone, ClassMap, Encoder, Evaluator, PatchSampler
    from htd_core.testing import synthetic_sample

    class B(Backbone):
        def fit(self, samples, builder, **options):
            return {"steps": 0}

        def generate(self, conditions, options):
            return np.zeros((len(conditions), 4, 4, 3), np.uint8)

        def save(self, path):
            pass

        @classmethod
        def load(cls, path):
            return cls()

    class S(PatchSampler):
        class_map = ClassMap(("tumor", "stroma", "normal"))

        def __iter__(self):
            yield synthetic_sample(8)

    class Ev(Evaluator):
        def reset(self):
            self.n = 0

        def update(self, *, real=None, synthetic=None):
            self.n += len(real or ())

        def aggregate(self):
            return {"n": self.n}

    class En(Encoder):
        name, embed_dim, input_size = "k", 3, 8

        def forward(self, pixels):
            return pixels.mean(dim=(2, 3))

    class Cmd(htd_core.Command):
        help = "a verb"

        def add_arguments(self, parser):
            parser.add_argument("value")

        def run(self, args):
            return int(args.value)

    return {"Backbone": B, "PatchSampler": S, "Evaluator": Ev, "Encoder": En, "Command": Cmd}


def test_each_hook_registers_its_kind(htd_manager, register_plugin):
    import numpy as np

    import htd_core

    register_plugin(EveryKindPlugin(), "every")
    backbone = htd_core.create("backbones", "k_backbone")
    assert backbone.generate([Condition()], htd_core.GenerationOptions()).shape == (1, 4, 4, 3)
    assert len(htd_core.create("patch_samplers", "k_sampler").take(5)) == 1
    ev = htd_core.create("evaluators", "k_evaluator")
    ev.reset()
    assert ev.evaluate([1, 2], []) == {"n": 2}
    enc = htd_core.create("encoders", "k_encoder")
    assert enc(np.zeros((2, 5, 5, 3), np.uint8)).shape == (2, 3) and "RANDOM" in enc.label
    assert isinstance(htd_core.create("condition_builders", "k_builder"), ConditionBuilder)
    from htd_core.cli import main

    assert main(["k-command", "3"]) == 3  # the CLI is built from the registered verbs
    kinds = {k for k, _ in htd_manager.plugin_infos()[0].components}
    assert kinds == {
        "condition builder", "backbone", "patch sampler", "evaluator", "encoder", "command"
    }  # fmt: skip
