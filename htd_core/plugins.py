"""Plugin loading: entry points of group ``htd``, built on first use, robust to bad plugins.

A plugin whose import or hook raises is recorded as ``broken`` with its error and the other
plugins still load; ``HTD_DISABLED_PLUGINS=a,b`` blocks plugins by entry-point name;
misspelled hook implementations are rejected by ``check_pending``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import traceback
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from htd_core import hookspecs
from htd_core.errors import PluginError
from htd_core.interfaces import (
    Backbone,
    Command,
    ConditionBuilder,
    Encoder,
    Evaluator,
    PatchSampler,
)
from htd_core.registry import Registry

DISABLED_ENV = "HTD_DISABLED_PLUGINS"


class DisabledPluginWarning(UserWarning):
    """``HTD_DISABLED_PLUGINS`` names a plugin that is not installed (a typo blocks nothing)."""


#: hook name -> (registry kind, base type); one registry per extension point.
KINDS: dict[str, tuple[str, type]] = {
    "htd_register_condition_builders": ("condition builder", ConditionBuilder),
    "htd_register_backbones": ("backbone", Backbone),
    "htd_register_patch_samplers": ("patch sampler", PatchSampler),
    "htd_register_evaluators": ("evaluator", Evaluator),
    "htd_register_encoders": ("encoder", Encoder),
    "htd_register_commands": ("command", Command),
}


@dataclass
class PluginInfo:
    """What ``htd plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    status: str = "ok"  # ok | broken | blocked
    error: str = ""
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


def disabled_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLED_ENV, "").split(",") if p.strip()}


class PluginManager:
    """pluggy manager plus the five typed registries, filled lazily.

    Args:
        autoload: load entry points of group ``htd`` (off in tests that register by hand).
        disabled: plugin names to block; default from ``HTD_DISABLED_PLUGINS``.
    """

    def __init__(self, autoload: bool = True, disabled: set[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.autoload = autoload
        self.disabled = disabled_from_env() if disabled is None else set(disabled)
        self.infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] | None = None
        self._loaded = False

    # -- loading ------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every ``htd`` entry point; record failures instead of raising."""
        if self._loaded:
            return
        self._loaded = True
        if not self.autoload:
            return
        points = sorted(md.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name)
        self._warn_unknown_disabled([ep.name for ep in points])
        for ep in points:
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist else "",
                dist.version if dist else "",
            )
            if ep.name in self.infos:
                info.status, info.error = (
                    "broken",
                    f"duplicate plugin name (also {self.infos[ep.name].module})",
                )
                self.infos[f"{ep.name}@{ep.value}"] = info
                continue
            self.infos[ep.name] = info
            if ep.name in self.disabled:
                info.status = "blocked"
                self.pm.set_blocked(ep.name)
                continue
            try:
                module = ep.load()
                self._register_module(ep.name, module)
            except Exception as exc:  # one broken plugin must not stop the others
                info.status, info.error = "broken", _describe(exc)

    def _warn_unknown_disabled(self, names: list[str]) -> None:
        """Warn for each blocked name that no installed plugin has, naming the closest one."""
        from htd_core.registry import suggest

        for name in sorted(self.disabled - set(names) - set(self.infos)):
            warnings.warn(
                f"{DISABLED_ENV} names {name!r}, which is no installed plugin, so it blocks "
                f"nothing.{suggest(name, names)} (`htd plugins` lists the plugin names)",
                DisabledPluginWarning,
                stacklevel=4,
            )

    def register(self, plugin: ModuleType | object, name: str | None = None) -> str:
        """Register a plugin object by hand (tests, notebooks); returns its name."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.disabled:
            self.infos[name] = PluginInfo(name, _module_name(plugin), status="blocked")
            return name
        self.infos[name] = PluginInfo(name, _module_name(plugin))
        self._register_module(name, plugin)
        self._registries = None  # rebuild with the new plugin
        return name

    def unregister(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._registries = None

    def _register_module(self, name: str, module: object) -> None:
        self.pm.register(module, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r}: {exc}") from exc

    # -- registries ---------------------------------------------------------------------
    @property
    def registries(self) -> dict[str, Registry]:
        """Hook name -> filled registry; every plugin's hooks run once, each isolated."""
        if self._registries is None:
            self.load_entry_points()
            self._registries = {h: Registry(kind, base) for h, (kind, base) in KINDS.items()}
            blocked = {i.name: i.module for i in self.infos.values() if i.status == "blocked"}
            for registry in self._registries.values():
                registry.blocked = blocked
            for info in self.infos.values():
                info.components.clear()
            for hook_name, registry in self._registries.items():
                self._run_hook(hook_name, registry)
        return self._registries

    def _run_hook(self, hook_name: str, registry: Registry) -> None:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.infos.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name, ""))
            if info.status != "ok":
                continue
            # pluggy's opt-in arguments: pass only what the implementation declares
            available = {"registry": registry}
            try:
                with registry.owned_by(impl.plugin_name):
                    impl.function(*(available[a] for a in impl.argnames))
            except Exception as exc:
                registry.unregister_plugin(impl.plugin_name)
                info.status, info.error = "broken", f"{hook_name}: {_describe(exc)}"
        for entry in registry.entries():
            if entry.plugin in self.infos:
                self.infos[entry.plugin].components.append((registry.kind, entry.name))

    def registry(self, hook_name: str) -> Registry:
        return self.registries[hook_name]

    @property
    def condition_builders(self) -> Registry[ConditionBuilder]:
        return self.registry("htd_register_condition_builders")

    @property
    def backbones(self) -> Registry[Backbone]:
        return self.registry("htd_register_backbones")

    @property
    def patch_samplers(self) -> Registry[PatchSampler]:
        return self.registry("htd_register_patch_samplers")

    @property
    def evaluators(self) -> Registry[Evaluator]:
        return self.registry("htd_register_evaluators")

    @property
    def encoders(self) -> Registry[Encoder]:
        return self.registry("htd_register_encoders")

    @property
    def commands(self) -> Registry[Command]:
        return self.registry("htd_register_commands")

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin seen (ok, broken or blocked), after filling the registries."""
        _ = self.registries
        return sorted(self.infos.values(), key=lambda i: i.name)


def _module_name(obj: object) -> str:
    return getattr(obj, "__name__", type(obj).__module__)


def _describe(exc: BaseException) -> str:
    """One line: the exception and the innermost frame that raised it."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built on first use (never at import time)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def set_plugin_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (tests); returns the previous one."""
    global _manager
    previous, _manager = _manager, manager
    return previous


def get_registry(kind: str) -> Registry:
    """Registry by short kind: ``condition_builders``, ``backbones``, ``patch_samplers``,
    ``evaluators``, ``encoders`` or ``commands``."""
    hook = f"htd_register_{kind}"
    if hook not in KINDS:
        raise PluginError(f"unknown component kind {kind!r}; kinds: {[k[13:] for k in KINDS]}")
    return get_plugin_manager().registry(hook)


def create(kind: str, name: str, **options: Any) -> Any:
    """Create a registered component: ``create("encoders", "inception_fid")``."""
    return get_registry(kind).create(name, **options)
