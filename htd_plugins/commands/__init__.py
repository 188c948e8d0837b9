"""CLI verbs, one module each (see :mod:`htd_core.cli`)."""
