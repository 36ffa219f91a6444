"""Optional C speed-ups, built when lossctl is installed with a C compiler at hand.

``_fastcsv`` parses numeric CSV blocks (see :mod:`lossctl.io.fastcsv`),
``_exactsum`` bins values for the exact sum (see :mod:`lossctl.core.exact`)
and ``_kernels`` holds the log-softmax of the softmax losses
(:mod:`lossctl.core.kernels`) and the row hash of the intervals, ``_keyindex``
the hash index of key joins (:mod:`lossctl.engine.keyindex`).
Each has a pure NumPy/pyarrow twin, used when the extension is missing or when
``LOSSCTL_NATIVE=0`` is set; the twins give the same bits, except the
log-softmax (within an ulp: exp is not correctly rounded, in C or in libm).
Tests compare the two.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

# each extension sits beside the Python code that uses it
PACKAGES = {"_fastcsv": "lossctl.io", "_exactsum": "lossctl.core", "_kernels": "lossctl.core",
            "_keyindex": "lossctl.engine"}
EXTENSIONS = tuple(PACKAGES)


def load(name: str) -> ModuleType | None:
    """The extension module ``name`` (``_fastcsv``...), or None (not built, or turned off)."""
    if os.environ.get("LOSSCTL_NATIVE", "1") == "0":
        return None
    try:
        return importlib.import_module(f"{PACKAGES[name]}.{name}")
    except ImportError:
        return None


def status() -> str:
    """Which C speed-ups this process uses, for ``lossctl --version``."""
    if os.environ.get("LOSSCTL_NATIVE", "1") == "0":
        return "C speed-ups: off, LOSSCTL_NATIVE=0"
    loaded = [name.lstrip("_") for name in EXTENSIONS if load(name) is not None]
    if not loaded:
        return "C speed-ups: not built, no C compiler at install time"
    return f"C speed-ups: {', '.join(loaded)}"
