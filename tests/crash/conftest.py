"""Crash tests share helpers (_segments.py, the writer script _child.py) from this folder."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # so `import _segments` works under every pytest import mode
    sys.path.insert(0, _HERE)

