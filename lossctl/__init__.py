"""lossctl: exact, streaming loss evaluation for prediction files.

``import lossctl`` stays cheap (no NumPy) so the CLI starts fast; the Python
API is loaded on first use:

>>> import lossctl
>>> lossctl.evaluate([3.0, 5.0, 2.5], [2.5, 5.0, 4.0], losses=["mse", "mae"]).values
{'mse': 0.8333333333333334, 'mae': 0.6666666666666666}
>>> report = lossctl.evaluate_files("sample_data/house_prices.csv", "price", "predicted_price",
...                                 "rmse", weight="weight", fail_if="rmse > 60000")
>>> round(report.to_dict()["losses"]["rmse"]["value"], 2), report.passed
(41391.05, True)

Files: :func:`evaluate_files` (``lossctl eval``), :func:`compare_files`
(``lossctl compare``), :func:`merge_states` (``lossctl merge``),
:func:`write_rows` (``lossctl rows``), each returning a :class:`Report`
whose ``to_dict()`` is the CLI's JSON.  Arrays: :func:`evaluate`, and
:class:`EvalState` for streams (``update``/``merge``/``result``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # (importing typing costs start-up; --version imports only this package)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "evaluate_files", "compare_files", "merge_states",
           "write_rows", "save_state", "EvalState", "Result", "Report"]

_WHERE = {"evaluate": "api", "evaluate_files": "api", "compare_files": "api",
          "merge_states": "api", "write_rows": "api", "save_state": "api",
          "EvalState": "core.state", "Result": "core.state", "Report": "report.model"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'lossctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
