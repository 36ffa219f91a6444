"""Optional C speed-ups, built when lossctl is installed with a C compiler at hand.

``_fastcsv`` parses numeric CSV blocks (see :mod:`lossctl.fastcsv`),
``_exactsum`` bins values for the exact sum (see :mod:`lossctl.accumulators`)
and ``_kernels`` holds the log-softmax of the softmax losses (:mod:`lossctl.losses`).
Each has a pure NumPy/pyarrow twin, used when the extension is missing or when
``LOSSCTL_NATIVE=0`` is set; the twins give the same bits, except the
log-softmax (within an ulp: exp is not correctly rounded, in C or in libm).
Tests compare the two.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(name: str) -> ModuleType | None:
    """The extension module ``lossctl.<name>``, or None (not built, or turned off)."""
    if os.environ.get("LOSSCTL_NATIVE", "1") == "0":
        return None
    try:
        return importlib.import_module(f"lossctl.{name}")
    except ImportError:
        return None


EXTENSIONS = ("_fastcsv", "_exactsum", "_kernels")


def status() -> str:
    """Which C speed-ups this process uses, for ``lossctl --version``."""
    if os.environ.get("LOSSCTL_NATIVE", "1") == "0":
        return "C speed-ups: off, LOSSCTL_NATIVE=0"
    loaded = [name.lstrip("_") for name in EXTENSIONS if load(name) is not None]
    if not loaded:
        return "C speed-ups: not built, no C compiler at install time"
    return f"C speed-ups: {', '.join(loaded)}"
