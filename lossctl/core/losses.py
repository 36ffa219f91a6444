"""Naming losses and metrics: look a name up in the catalogue, bind its parameters.

A loss or metric is named as ``NAME`` or ``NAME:key=value,key=value`` (see
:func:`parse_loss` and :func:`parse_loss_list`); the definitions are in
:mod:`lossctl.core.catalogue`, what a definition is made of in
:mod:`lossctl.core.definitions`.  Some names (``accuracy``, ``brier``,
``ece``, the alias ``log_loss``) have a binary and a multiclass definition;
the number of prediction columns picks one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..suggest import closest, did_you_mean
from .catalogue import CATALOGUE
from .definitions import EPS, HARD_Z, ROW_SUM_TOL, Array, LossDef, Term

__all__ = ["CATALOGUE", "EPS", "ROW_SUM_TOL", "Loss", "LossDef", "all_names", "default_losses",
           "describe_catalogue", "lookup", "parse_loss", "parse_loss_list", "resolve"]

_BY_NAME: dict[str, list[LossDef]] = {}
for _d in CATALOGUE:
    _BY_NAME.setdefault(_d.name, []).append(_d)
_ALIASES: dict[str, list[str]] = {}
for _d in CATALOGUE:
    for _a in _d.aliases:
        if _d.name not in _ALIASES.setdefault(_a, []):
            _ALIASES[_a].append(_d.name)


def _definitions(name: str) -> list[LossDef]:
    """Every definition a name or alias can mean (one, or a binary and a multiclass one)."""
    names = [name] if name in _BY_NAME else _ALIASES.get(name, [])
    return [d for n in names for d in _BY_NAME[n]]


def _pick(candidates: list[LossDef], pred_width: int | None) -> LossDef:
    """The definition for ``pred_width`` prediction columns (the one-column kind when unknown)."""
    if len(candidates) == 1 or pred_width is None:
        return candidates[0]
    want = "vector" if pred_width > 1 else "value"
    return next((d for d in candidates if d.pred == want), candidates[0])


@dataclass(frozen=True)
class Loss:
    """A loss with its parameters bound, as the user named it.

    ``key`` is the spelling the user wrote (``huber:delta=2``): reports are
    keyed by it.  ``canonical`` names the same loss with every parameter
    spelled out, for comparing states and baselines.
    """

    definition: LossDef
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def canonical(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}:{inner}"

    def terms(self) -> list[tuple[tuple, Term]]:
        """The sum terms this loss needs, with their keys (equal keys: the same per-row values)."""
        return [(t.key(self.params), t) for t in self.definition.sum_terms()]

    @property
    def rows_key(self) -> tuple:
        """The key of a mean's per-row values (losses with equal keys share them: mse, rmse)."""
        return self.terms()[0][0]

    def component(self, label_width: int, pred_width: int) -> Any:
        """The component spec this definition needs for these widths, or None."""
        make = self.definition.component
        return None if make is None else make(self.params, label_width, pred_width)

    def per_row(self, y: Array, p: Array, d: Array | None = None) -> Array:
        """Per-row losses of one chunk (no validation); ``d`` is ``y - p`` if already known."""
        kernel = self.definition.kernel
        if kernel is None:
            raise UsageError(f"{self.key} is a {self.definition.kind} metric: it has no per-row values")
        if self.definition.on_diff:
            return kernel(y - p if d is None else d, **self.params)
        return kernel(y, p, **self.params)

    def finish(self, mean: Any) -> Any:
        """The value from the weighted mean (rmse: its root); replicate arrays element-wise."""
        f = self.definition.finish
        if isinstance(mean, np.ndarray):
            if f is None:
                return mean
            return np.array([f(v) if v >= 0 else math.nan for v in mean.tolist()])
        mean = float(mean)
        return f(mean) if f is not None else mean

    def finish_rows(self, values: Array) -> Array:
        """``finish`` row by row (a row's rmse is its absolute error), for per-row output."""
        f = self.definition.finish
        if f is None:
            return values
        if f is math.sqrt:
            return np.sqrt(values)
        return np.vectorize(f, otypes=[np.float64])(values)

    def to_json(self) -> dict:
        return {"key": self.key, "name": self.name, "task": self.definition.task,
                "params": self.params}

    @classmethod
    def from_json(cls, data: dict) -> Loss:
        candidates = _BY_NAME[data["name"]]
        d = next((c for c in candidates if c.task == data.get("task")), None)
        if d is None:  # (a report's losses name no task: the parameters tell the definitions apart)
            d = next((c for c in candidates if {p.name for p in c.params} == set(data["params"])),
                     candidates[0])
        return cls(d, dict(data["params"]), data["key"])


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) and not float(v).is_integer() else str(v)


_NEEDS = {"value": "1 column", "binary": "1 column in [0, 1]",
          "signed": "1 column in [0, 1], or -1/+1", "class": "class index in [0, K)",
          "dist": "K columns (distribution)", "class_or_dist": "class index or K columns",
          "vector": "K columns or a list column"}


def describe_catalogue() -> list[dict[str, Any]]:
    """One plain dict per definition (for ``lossctl losses`` and the docs): names, parameters,
    columns, formula, the definition's own bad-input rules and its direction.

    ``params`` maps each parameter to its default (``None``: required);
    ``parameters`` describes each one (type, default, valid values, meaning).
    """
    rows = []
    for d in CATALOGUE:
        class_index = d.label in ("class", "class_or_dist")
        rows.append({
            "name": d.name, "aliases": list(d.aliases), "task": d.task, "formula": d.formula,
            "params": {p.name: p.default for p in d.params},
            "parameters": [{"name": p.name, "type": _PARAM_TYPES[p.kind], "default": p.default,
                            "required": p.default is None, "valid": p.valid_doc or None,
                            "description": p.doc} for p in d.params],
            "label": "1 column of 0/1" if HARD_Z in d.checks else _NEEDS[d.label],
            "prediction": _NEEDS[d.pred], "description": d.doc,
            "kind": d.kind, "group": d.group, "higher_is_better": d.higher_is_better,
            "better": "higher" if d.higher_is_better else "nearer 0" if d.best_at_zero else "lower",
            "input_checks": [{"role": c.role, "rule": c.reason} for c in d.checks]
            + ([{"role": "label", "rule": CLASS_INDEX_RULE}] if class_index else []),
            "reference": d.reference or None,
        })
    return rows


_PARAM_TYPES = {float: "number", int: "integer", bool: "boolean"}
CLASS_INDEX_RULE = "class index must be an integer in [0, K)"  # the state's check, K columns


def all_names() -> list[str]:
    """Every loss name and alias, for help texts and suggestions."""
    return sorted(set(_BY_NAME) | set(_ALIASES))


def lookup(name: str, pred_width: int | None = None) -> LossDef:
    """Find a loss by name or alias; ``pred_width`` picks the binary or multiclass definition."""
    low = name.strip().lower()
    candidates = _definitions(low)
    if candidates:
        return _pick(candidates, pred_width)
    raise UsageError(f"unknown loss {name!r}.{did_you_mean(suggest_names(low))} "
                     f"Known losses: {', '.join(all_names())}.")


# Names people write for a loss or metric that the catalogue spells another way.  A
# synonym is only a suggestion (the catalogue's aliases are what lossctl accepts),
# and one naming a definition not in the catalogue yet is never offered.
SYNONYMS: dict[str, str] = {
    "auroc": "roc_auc", "roc": "roc_auc", "rocauc": "roc_auc", "auc_roc": "roc_auc",
    "auprc": "pr_auc", "prauc": "pr_auc", "ap": "pr_auc", "aupr": "pr_auc",
    "logloss": "log_loss", "nll": "log_loss", "cross_entropy": "cce", "crossentropy": "cce",
    "ce": "cce", "xent": "cce", "bce_loss": "bce", "binary_cross_entropy": "bce",
    "l2": "mse", "mean_squared_error": "mse", "squared_error": "mse",
    "root_mean_squared_error": "rmse", "mean_absolute_error": "mae", "absolute_error": "mae",
    "mean_absolute_percentage_error": "mape", "mean_squared_log_error": "msle",
    "root_mean_squared_log_error": "rmsle", "huber_loss": "huber", "smooth_l1": "huber",
    "pinball_loss": "quantile", "hinge_loss": "hinge", "focal_loss": "focal",
    "logcosh": "log_cosh", "kl": "kl_div", "kld": "kl_div", "kl_divergence": "kl_div",
    "kullback_leibler": "kl_div", "acc": "accuracy", "accuracy_score": "accuracy",
    "r_squared": "r2", "rsquared": "r2", "coefficient_of_determination": "r2",
    "precision_score": "precision", "ppv": "precision", "recall_score": "recall",
    "sensitivity": "recall", "tpr": "recall", "fscore": "f1", "f_score": "f1", "f1score": "f1",
    "matthews": "mcc", "brier_score_loss": "brier", "calibration_error": "ece",
    "expected_calibration_error": "ece", "topk": "top_k_accuracy", "top_k": "top_k_accuracy",
    "max_err": "max_error", "bias": "mean_bias", "mean_poisson_deviance": "poisson_deviance",
}


def suggest_names(name: str) -> list[str]:
    """The catalogue names nearest ``name``: its synonym first, then look-alike names and aliases."""
    low = name.strip().lower().replace("-", "_")
    known = all_names()
    out = [SYNONYMS[low]] if SYNONYMS.get(low) in known else []
    return (out + [n for n in closest(low, known) if n not in out])[:3]


def bind(definition: LossDef, given: dict[str, Any], key: str) -> Loss:
    """Check ``given`` against the loss's parameters, fill defaults, and bind."""
    known = {p.name: p for p in definition.params}
    for k in given:
        if k not in known:
            names = ", ".join(known) or "none"
            close = difflib.get_close_matches(k, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{definition.name}: unknown parameter {k!r}.{hint} Parameters: {names}.")
    params: dict[str, Any] = {}
    for p in definition.params:
        if p.name in given:
            params[p.name] = p.check(definition.name, given[p.name])
        elif p.default is None:
            raise UsageError(f"{definition.name}: parameter {p.name} is required "
                             f"(e.g. {definition.name}:{p.name}=1)")
        else:
            params[p.name] = p.default
    return Loss(definition, params, key)


def parse_loss(text: str, pred_width: int | None = None) -> Loss:
    """Parse ``NAME`` or ``NAME:key=value,...`` into a bound :class:`Loss`."""
    text = text.strip()
    name, _, rest = text.partition(":")
    definition = lookup(name, pred_width)
    given: dict[str, Any] = {}
    known = {p.name: p for p in definition.params}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq:
            raise UsageError(f"{text!r}: parameters are written key=value, not {item!r}")
        if k in given:
            raise UsageError(f"{text!r}: parameter {k!r} given twice")
        given[k] = known[k].parse(definition.name, v) if k in known else v
    return bind(definition, given, text)


def split_loss_list(texts: Sequence[str]) -> list[str]:
    """Split ``-m`` values on commas: ``mse,huber:delta=2,q=1`` style lists.

    A comma-separated item holding ``=`` but no ``:`` continues the parameter
    list of the loss before it.
    """
    out: list[str] = []
    for text in texts:
        for item in (s.strip() for s in text.split(",")):
            if not item:
                continue
            if "=" in item and ":" not in item and out:
                out[-1] += "," + item
            else:
                out.append(item)
    return out


def parse_loss_list(texts: Sequence[str], pred_width: int | None = None) -> list[Loss]:
    """Parse repeated/comma-separated loss names, dropping exact repeats."""
    seen: dict[str, Loss] = {}
    for item in split_loss_list(texts):
        loss = parse_loss(item, pred_width)
        seen.setdefault(loss.key, loss)
    return list(seen.values())


def resolve(spec: str | Loss, pred_width: int | None = None) -> Loss:
    """Accept a Loss or its text form."""
    return spec if isinstance(spec, Loss) else parse_loss(spec, pred_width)


def default_losses(y: Array, p: Array) -> list[Loss]:
    """Pick sensible losses from a sample of the columns when the user named none.

    One prediction column: binary labels with probabilities give ``bce``,
    ``accuracy`` and ``roc_auc``; binary labels with any other score give
    ``sigmoid_ce``, ``accuracy:threshold=0`` and ``roc_auc``; anything else
    is regression (``mse``, ``rmse``, ``mae``, ``r2``).  K prediction
    columns: rows of probabilities give ``cce``, logits give
    ``sparse_softmax_ce`` (one label column) or ``softmax_ce`` (K label
    columns), each with ``accuracy`` when the label is a class index.
    """
    with np.errstate(invalid="ignore"):
        finite_p = p[np.isfinite(p).all(axis=1)] if p.ndim == 2 else p[np.isfinite(p)]
        is_prob = finite_p.size > 0 and bool(((finite_p >= 0) & (finite_p <= 1)).all())
        if p.ndim == 2 and p.shape[1] > 1:
            if is_prob and bool((np.abs(finite_p.sum(axis=1) - 1) <= ROW_SUM_TOL).all()):
                names = ["cce"]
            else:
                names = ["sparse_softmax_ce"] if y.ndim == 1 else ["softmax_ce"]
            if y.ndim == 1:
                names.append("accuracy")
        else:
            finite_y = y[np.isfinite(y)]
            binary = finite_y.size > 0 and bool(np.isin(finite_y, (0.0, 1.0)).all())
            if binary:
                names = ["bce", "accuracy"] if is_prob else ["sigmoid_ce", "accuracy:threshold=0"]
                names.append("roc_auc")
            else:
                names = ["mse", "rmse", "mae", "r2"]
    width = p.shape[1] if p.ndim == 2 else 1
    return [parse_loss(n, width) for n in names]
