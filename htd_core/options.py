"""Options as frozen dataclasses, and the one preset helper.

A component's options are a small frozen dataclass validated in ``__post_init__`` (diffusers'
scheduler configs, STYLE.md): one declaration shared by every constructor that takes them, so
no constructor restates another's parameter list. A class declares its dataclass as the class
attribute ``Options``; the registries then know the option names without a signature
(:func:`htd_core.registry.accepted_options`), and :func:`make_options` builds it from keyword
options with errors that name the field, the value and what is allowed.

A preset is a named instance of such a dataclass (a model size, an experiment budget);
:func:`preset` is the one way to take one and override some of its fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from htd_core.errors import InputError, suggest

T = TypeVar("T")


def options_class(factory: Any) -> type | None:
    """The frozen options dataclass a component class declares as ``Options`` (None if none)."""
    cls = getattr(factory, "Options", None)
    return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None


def field_names(cls: type) -> list[str]:
    """The field names of options dataclass ``cls``, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def make_options(
    cls: type[T],
    given: Mapping[str, Any],
    what: str,
    *,
    moved: Mapping[str, str] | None = None,
) -> T:
    """``cls(**given)``, refusing unknown keys with the closest field and the list of fields.

    Args:
        cls: an options dataclass.
        given: keyword options (e.g. a YAML mapping).
        what: the component, for messages (``"controlnet_ldm"``).
        moved: keys that are no longer options of ``cls`` -> where they went (the message).

    Raises:
        InputError: an unknown key, or any error of ``cls.__post_init__``.
    """
    names = field_names(cls)
    for key in given:
        if key in (moved or {}):
            raise InputError(f"{what}: {key!r} is no longer an option here: {moved[key]}")
        if key not in names:
            raise InputError(
                f"{what} has no option {key!r}.{suggest(str(key), names)} Options: "
                f"{', '.join(names)}"
            )
    return cls(**given)


def preset(
    presets: Mapping[str, T], name: str, overrides: Mapping[str, Any] | None = None, what: str = ""
) -> T:
    """THE preset helper: preset ``name`` of ``presets`` with some fields replaced
    (``name + overrides -> preset``; :func:`override` does the second half).

    Args:
        presets: preset name -> instance of one frozen dataclass.
        name: the preset to take.
        overrides: field -> value, validated again by the dataclass's ``__post_init__``
            (``None`` values are overrides too: drop them first where ``None`` means "the
            preset's").
        what: the kind of preset, for messages (``"budget"``, ``"backbone preset"``).

    Raises:
        InputError: an unknown preset (with the closest name and the list) or an unknown field
            (with the closest field and the list).
    """
    what = what or "preset"
    if name not in presets:
        names = list(presets)
        raise InputError(
            f"unknown {what} {name!r}.{suggest(str(name), names)} Choose one of: {', '.join(names)}"
        )
    return override(presets[name], overrides, f"{what} {name!r}")


def override(base: T, overrides: Mapping[str, Any] | None, what: str) -> T:
    """``base`` (a frozen dataclass) with the fields in ``overrides`` replaced and validated.

    Raises:
        InputError: a key that is not a field of ``base`` (closest field and the list), or any
            error of its ``__post_init__``.
    """
    overrides = dict(overrides or {})
    known = [f for f in field_names(type(base)) if f != "name"]
    for key in overrides:
        if key not in known:
            raise InputError(
                f"{what} has no option {key!r}.{suggest(str(key), known)} Options: "
                f"{', '.join(known)}"
            )
    return dataclasses.replace(base, **overrides) if overrides else base


def check_int(value: Any, what: str, low: int = 0) -> int:
    """``value`` when it is an integer (not a bool) >= ``low``; else an InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{what}={value!r} must be an integer >= {low}")
    return value


def check_number(value: Any, what: str, low: float = 0.0, *, above: bool = False) -> float:
    """``value`` as a float when it is a finite number (not a bool) >= ``low`` (> ``low`` with
    ``above``); else an InputError naming it."""
    import math

    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > low if above else value >= low):
        raise InputError(
            f"{what}={value!r} must be a finite number {'>' if above else '>='} {low:g}"
        )
    return float(value)


def int_at_least(low: int, high: int | None = None):
    """An argparse ``type`` for integers >= ``low`` (and <= ``high``): a bad value is refused at
    parse time, in one line, exit 2; 0 never silently means "the default"."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f" and <= {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"{value} must be an integer >= {low}{bound}")
        return value

    parse.__name__ = f"integer >= {low}" + (f" and <= {high}" if high is not None else "")
    return parse


def number_at_least(
    low: float, *, above: bool = False, high: float | None = None, below: bool = False
):
    """An argparse ``type`` for finite numbers >= ``low`` (> ``low`` with ``above``), and
    <= ``high`` (< ``high`` with ``below``) when ``high`` is given."""
    import argparse
    import math

    bound = f"{'>' if above else '>='} {low:g}"
    if high is not None:
        bound += f" and {'<' if below else '<='} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value) and (value > low if above else value >= low)
        if high is not None:
            ok = ok and (value < high if below else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"{value:g} must be a number {bound}")
        return value

    parse.__name__ = f"number {bound}"
    return parse
