"""Exceptions raised by htd.

Every error a user can cause derives from :class:`HtdError`; the CLI prints it on stderr
without a traceback and exits non-zero. Messages name the offending input and the fix.
"""

from __future__ import annotations

import difflib


class HtdError(Exception):
    """Base class of errors caused by user input, configuration or data."""


class RegistryError(HtdError):
    """A component could not be registered or created."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(RegistryError):
    """Two plugins registered the same name."""


class ComponentOptionError(RegistryError, TypeError):
    """Options given to a component that it does not accept or that are invalid."""


class PluginError(HtdError):
    """A plugin failed to import or to run one of its hooks."""


class ConfigError(HtdError):
    """A pipeline configuration file or mapping is invalid."""


class InputError(HtdError, ValueError):
    """Input data (slide, mask, image, condition) is missing or malformed."""


class DiskFullError(HtdError):
    """The disk of an output ran full while writing it (what was written whole is kept, so
    the same command resumes once there is space; :func:`htd_core.io.disk_full`)."""


def suggest(name: str, candidates: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``candidates`` (difflib), or an empty string:
    the tail of every "unknown name" message."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
