"""Sphinx configuration of htd's API reference (``make docs``; built by tests/test_api_docs.py).

Sphinx with autodoc and napoleon, as MONAI and tiatoolbox document their APIs: the pages are
generated from the Google-style docstrings, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the source tree, installed or not

project = "htd"
author = "htd developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "alabaster"
html_title = "htd API reference"
exclude_patterns = ["_build"]
# Not nitpicky: links to numpy, torch and PIL types would need their intersphinx inventories,
# which a build that must run offline cannot fetch. Every other warning is an error (-W).
