"""Off-policy evaluation: estimate a target policy's value from another policy's log.

Modules: :mod:`~experiments.ope.base` (input conventions, validation, records),
:mod:`~experiments.ope.estimators` (the contract; Replay, IPS, SNIPS),
:mod:`~experiments.ope.model_based` (DM, DR, SNDR, Switch-DR, DR-OS),
:mod:`~experiments.ope.reward_model` (cross-fitted Ridge/MLP reward models),
:mod:`~experiments.ope.bootstrap` (intervals, effective sample size),
:mod:`~experiments.ope.evaluate` (many estimators at once), :mod:`~experiments.ope.data`
(CSV/Parquet logs, ``.npy`` targets, the engine's log), :mod:`~experiments.ope.report`
(table, JSON lines, PNG) and :mod:`~experiments.ope.run` (``loopwise ope``).

>>> import numpy as np
>>> from experiments.ope import run_ope_on_arrays
>>> rng = np.random.default_rng(0)
>>> n, k = 2000, 3
>>> action = rng.integers(k, size=n)                    # uniform logging
>>> reward = (rng.random(n) < np.where(action == 2, 0.6, 0.2)).astype(float)
>>> target = np.zeros((n, k, 1)); target[:, 2, 0] = 1.0  # always action 2: true value 0.6
>>> result = run_ope_on_arrays(reward, action, np.full(n, 1 / 3), target)
>>> abs(result["DR"].estimate - 0.6) < 0.05, result["IPS"].low < 0.6 < result["IPS"].high
(True, True)
"""

from experiments.ope.base import Estimate, Interval, LoggedData, OPEInputError, validate
from experiments.ope.bootstrap import effective_sample_size
from experiments.ope.estimators import IPS, SNIPS, Estimator, Replay
from experiments.ope.evaluate import (
    default_estimators,
    diagnostics,
    evaluate,
    make_estimator,
    resolve_estimators,
)
from experiments.ope.model_based import DM, DR, DROS, SNDR, SwitchDR
from experiments.ope.report import OPEResult
from experiments.ope.reward_model import MLP, Ridge, cross_fit
from experiments.ope.run import run_ope_on_arrays, run_ope_on_data, run_ope_on_log

__all__ = ["DM", "DR", "DROS", "IPS", "MLP", "SNDR", "SNIPS", "Estimate", "Estimator",
           "Interval", "LoggedData", "OPEInputError", "OPEResult", "Replay", "Ridge", "SwitchDR",
           "cross_fit", "default_estimators", "diagnostics", "effective_sample_size", "evaluate",
           "make_estimator", "resolve_estimators", "run_ope_on_arrays", "run_ope_on_data",
           "run_ope_on_log", "validate"]
