"""Compression tests share the frame-crafting helpers of _frames.py in this folder."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # so `import _frames` works under every pytest import mode
    sys.path.insert(0, _HERE)
