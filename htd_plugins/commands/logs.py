"""Where library log lines go while an ``htd`` verb runs: stderr only, one line each.

tiatoolbox installs two handlers on the root logger when it is imported (INFO lines to stdout,
WARNING and above to stderr, with timestamps), and logs on the root logger itself, so its
metadata and query-plan notices would mix with a verb's output on stdout. A verb calls
:func:`route_logging` first: tiatoolbox's handlers are removed, and one handler writes
``htd VERB: LEVEL: message`` on stderr for records at WARNING and above, tiatoolbox's only from
``library_level`` up. An application that configured logging itself (other root handlers)
keeps its setup.
"""

from __future__ import annotations

import logging
import sys

#: Marks the handler htd installed (so a second verb in one process replaces it).
_MARK = "_htd_handler"


def route_logging(verb: str, library_level: int = logging.WARNING) -> None:
    """Send log records to stderr as one line each (module doc)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False) or _is_tiatoolbox(handler):
            root.removeHandler(handler)
    if root.handlers:
        return

    def keep(record: logging.LogRecord) -> bool:
        return "tiatoolbox" not in record.pathname or record.levelno >= library_level

    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _MARK, True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"htd {verb}: %(levelname)s: %(message)s"))
    handler.addFilter(keep)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    if _warning_text not in warnings_logger.filters:
        warnings_logger.addFilter(_warning_text)


def _is_tiatoolbox(handler: logging.Handler) -> bool:
    """tiatoolbox's own root handlers: its ``|asctime| [LEVEL] message`` format."""
    fmt = getattr(handler.formatter, "_fmt", "") or ""
    return isinstance(handler, logging.StreamHandler) and fmt.startswith("|%(asctime)s")


def _warning_text(record: logging.LogRecord) -> bool:
    """Reduce a captured warning to its message (no file:line, no source line)."""
    text = str(record.args[0]) if record.args else str(record.msg)
    record.msg, record.args = text.split(": ", 2)[-1].strip().splitlines()[0], ()
    return True
