"""The reliability suite imports its helpers as `tests.reliability.helpers`."""

from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib keeps the repo root off sys.path.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
