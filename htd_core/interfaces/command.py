"""Command: one ``htd`` verb, contributed by a plugin (llm's ``register_commands``, tox's
``tox_add_option``). The core's :func:`htd_core.cli.main` builds the parser from what is
registered and contains no verb itself."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable


class Command(ABC):
    """A CLI verb: ``htd <name> ...``.

    Register the class with ``registry.register("verb-name", MyCommand)`` from the
    ``htd_register_commands`` hook; the registered name is the verb. Keep module import light:
    import heavy libraries inside :meth:`run`, so ``htd --help`` stays fast.

    Attributes:
        help: one line shown in ``htd --help``.
        description: the longer text of ``htd <verb> --help`` (default: ``help``).
        order: position in ``htd --help`` (lower first; ties by name).
    """

    help: str = ""
    description: str = ""
    order: int = 100

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the verb's arguments and options on its own sub-parser."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Do the work; return the exit status. Raise :class:`htd_core.HtdError` for user
        errors: the CLI prints it as one line and exits 2."""


def make_command(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str = "",
    order: int = 100,
) -> type[Command]:
    """A :class:`Command` subclass from two module functions (how the built-in verbs are
    written: ``registry.register("sample", make_command(add_arguments, run, help=...))``)."""
    attrs = {
        "help": help,
        "description": description,
        "order": order,
        "add_arguments": staticmethod(add_arguments),
        "run": staticmethod(run),
        "__doc__": help,
        "__module__": getattr(run, "__module__", __name__),
    }
    return type(f"{run.__module__.rsplit('.', 1)[-1].title()}Command", (Command,), attrs)
