"""Run a set of estimators with bootstrap intervals and weight diagnostics."""

from __future__ import annotations

import numpy as np

from experiments.ope.base import Estimate, LoggedData
from experiments.ope.estimators import Estimator, combine, default_estimators


def diagnostics(d: LoggedData) -> dict:
    """Effective sample size ``(sum w)^2 / sum w^2``, the largest weight, and the share of
    rounds where the target gives the logged action probability 0."""
    w = d.weights()
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w > 0).any() else 0.0
    return {"ess": ess, "max_weight": float(w.max()),
            "zero_target_share": float((d.target_prob() == 0).mean())}


def evaluate(d: LoggedData, estimators: list[Estimator] | None = None, n_bootstrap: int = 200,
             alpha: float = 0.05, seed: int = 0) -> list[Estimate]:
    """Every estimator's value with a percentile bootstrap interval (rounds resampled with
    replacement; the reward model is not refit) and the shared weight diagnostics."""
    estimators = estimators if estimators is not None else default_estimators()
    if d.estimated_rewards is None:
        estimators = [e for e in estimators if not e.needs_model]
    rng = np.random.default_rng(seed)
    boot = rng.integers(d.n_rounds, size=(n_bootstrap, d.n_rounds))
    diag = diagnostics(d)
    out = []
    for est in estimators:
        est._check(d)
        terms = est._terms(d)
        value = float(combine(*terms))
        samples = combine(*(None if t is None else t[boot] for t in terms), axis=1)
        samples = samples[np.isfinite(samples)]
        lo, hi = (np.quantile(samples, [alpha / 2, 1 - alpha / 2]) if len(samples)
                  else (np.nan, np.nan))
        out.append(Estimate(est.name, value, float(lo), float(hi), diag["ess"],
                            diag["max_weight"], diag["zero_target_share"], d.n_rounds))
    return out
