"""lossctl: exact, streaming loss evaluation for prediction files.

``import lossctl`` stays cheap (no NumPy) so the CLI starts fast; the Python
API is loaded on first use::

    import lossctl
    result = lossctl.evaluate(y_true, y_pred, losses=["mse", "huber:delta=2"])
"""

from __future__ import annotations

TYPE_CHECKING = False  # (importing typing costs start-up; --version imports only this package)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "evaluate_files", "EvalState", "Result"]


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "evaluate_files"):
        from . import api

        return getattr(api, name)
    if name in ("EvalState", "Result"):
        from .core import state

        return getattr(state, name)
    raise AttributeError(f"module 'lossctl' has no attribute {name!r}")
