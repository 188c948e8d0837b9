"""Make the plugin importable without installing it (the suite runs from the repo root)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
