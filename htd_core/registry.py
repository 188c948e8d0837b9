"""Typed registries of named components (timm-style, with clearer errors).

A plugin hook receives one :class:`Registry` per extension point and calls
``registry.register(name, factory)``. The factory is a subclass of the registry's base type,
or any callable returning an instance of it (checked when the component is created).
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from htd_core.errors import (
    ComponentOptionError,
    DuplicateComponentError,
    HtdError,
    RegistryError,
    UnknownComponentError,
    suggest,
)

T = TypeVar("T")

#: Attribute under which a created component remembers ``{"name": ..., **options}``, so a
#: pipeline can save it by registered name and re-create it (``Pipeline.save_pretrained``).
SPEC_ATTRIBUTE = "htd_spec"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: its name, factory, owning plugin and one-line summary."""

    name: str
    factory: Callable[..., T]
    plugin: str
    summary: str


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Named factories of one component kind (e.g. condition builders).

    Args:
        kind: human-readable kind used in messages ("condition builder").
        base: the type every created component must be an instance of.
    """

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._current_plugin = "<direct>"
        #: plugin name -> module of the plugins blocked by HTD_DISABLED_PLUGINS (for messages)
        self.blocked: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------
    @contextlib.contextmanager
    def owned_by(self, plugin: str) -> Iterator[Registry[T]]:
        """Attribute registrations made inside the block to ``plugin`` (for messages)."""
        previous, self._current_plugin = self._current_plugin, plugin
        try:
            yield self
        finally:
            self._current_plugin = previous

    def register(self, name: str, factory: Callable[..., T], *, summary: str | None = None) -> None:
        """Register ``factory`` under ``name``.

        Raises:
            RegistryError: the name is not a simple identifier or the factory has the wrong type.
            DuplicateComponentError: another plugin already registered the name.
        """
        if (
            not isinstance(name, str)
            or not name
            or not all(c.isalnum() or c in "_-." for c in name)
        ):
            raise RegistryError(
                f"{self.kind} name {name!r} is invalid: use letters, digits, '_', '-' or '.'"
            )
        if inspect.isclass(factory):
            if not issubclass(factory, self.base):
                raise RegistryError(
                    f"cannot register {self.kind} {name!r}: {factory.__qualname__} is not a "
                    f"subclass of {self.base.__name__}"
                )
        elif not callable(factory):
            raise RegistryError(
                f"cannot register {self.kind} {name!r}: expected a {self.base.__name__} subclass "
                f"or a callable returning one, got {type(factory).__name__}"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin "
                f"{self._current_plugin!r}; block one with HTD_DISABLED_PLUGINS={other}"
            )
        self._entries[name] = Entry(
            name, factory, self._current_plugin, summary or _first_doc_line(factory)
        )

    def unregister_plugin(self, plugin: str) -> list[str]:
        """Remove everything ``plugin`` registered (used to roll back a failing hook)."""
        removed = [n for n, e in self._entries.items() if e.plugin == plugin]
        for n in removed:
            del self._entries[n]
        return removed

    # -- lookup -------------------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style glob (``"dinov2_*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; unknown names list what exists and suggest the closest."""
        try:
            return self._entries[name]
        except KeyError:
            available = self.names()
            listing = ", ".join(available) if available else "none registered"
            raise UnknownComponentError(
                self._blocked_message(str(name))
                or f"unknown {self.kind} {name!r}.{suggest(str(name), available)} Available: "
                f"{listing}{self._blocked_note()}"
            ) from None

    def _blocked_message(self, name: str) -> str:
        """The error for a name whose plugin (same name, or module ``...<name>``) is blocked."""
        for plugin, module in self.blocked.items():
            if name in (plugin, module.rpartition(".")[2], plugin.removeprefix("cmd_")):
                return (
                    f"{self.kind} {name!r} is blocked by HTD_DISABLED_PLUGINS (plugin "
                    f"{plugin!r}): remove {plugin!r} from HTD_DISABLED_PLUGINS to use it"
                )
        return ""

    def _blocked_note(self) -> str:
        if not self.blocked:
            return ""
        return f" (blocked by HTD_DISABLED_PLUGINS: {', '.join(sorted(self.blocked))})"

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def create(self, name: str, **options: Any) -> T:
        """Instantiate component ``name`` with keyword options, validating option names."""
        entry = self.entry(name)
        check_options(entry.factory, options, f"{self.kind} {name!r}")
        try:
            obj = entry.factory(**options)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, HtdError):  # the component's own clear error: keep its type
                raise
            raise ComponentOptionError(f"{self.kind} {name!r}: {exc}") from exc
        if not isinstance(obj, self.base):
            raise RegistryError(
                f"{self.kind} {name!r} (plugin {entry.plugin!r}) returned "
                f"{type(obj).__name__}, not a {self.base.__name__}"
            )
        with contextlib.suppress(AttributeError):  # __slots__: cannot be saved by name
            setattr(obj, SPEC_ATTRIBUTE, {"name": name, **options})
        return obj


def accepted_options(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword names ``factory`` accepts, or None when it takes ``**kwargs``.

    A class that declares its options as a frozen dataclass (class attribute ``Options``,
    :mod:`htd_core.options`) accepts that dataclass's fields.
    """
    from htd_core.options import field_names, options_class

    declared = options_class(factory)
    if declared is not None:
        return field_names(declared)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def accepted_subset(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``factory`` accepts (all of them when it takes
    ``**kwargs``): the one way to pass a run-wide option (device, weights, a crop bank...) only
    to the components that declare it."""
    allowed = accepted_options(factory)
    return {k: v for k, v in options.items() if allowed is None or k in allowed}


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str) -> None:
    """Raise :class:`ComponentOptionError` naming any option ``factory`` does not take."""
    allowed = accepted_options(factory)
    if allowed is None:
        return
    for key in options:
        if key not in allowed:
            raise ComponentOptionError(
                f"{what} has no option {key!r}.{suggest(key, allowed)} "
                f"Options: {', '.join(allowed) or 'none'}"
            )
