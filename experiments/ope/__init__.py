"""Off-policy evaluation: estimate a target policy's value from another policy's log.

>>> import numpy as np
>>> from experiments.ope import run_ope_on_arrays
>>> rng = np.random.default_rng(0)
>>> n, k = 2000, 3
>>> action = rng.integers(k, size=n)                    # uniform logging
>>> reward = (rng.random(n) < np.where(action == 2, 0.6, 0.2)).astype(float)
>>> target = np.zeros((n, k, 1)); target[:, 2, 0] = 1.0  # always action 2: true value 0.6
>>> est = {e.name: e for e in run_ope_on_arrays(reward, action, np.full(n, 1 / 3), target)}
>>> abs(est["DR"].estimate - 0.6) < 0.05, est["IPS"].low < 0.6 < est["IPS"].high
(True, True)
"""

from experiments.ope.base import Estimate, LoggedData, OPEInputError, validate
from experiments.ope.estimators import (
    DM,
    DR,
    DROS,
    IPS,
    SNDR,
    SNIPS,
    Estimator,
    Replay,
    SwitchDR,
    default_estimators,
)
from experiments.ope.evaluate import diagnostics, evaluate
from experiments.ope.run import run_ope_on_arrays, run_ope_on_data, run_ope_on_log

__all__ = ["DM", "DR", "DROS", "IPS", "SNDR", "SNIPS", "Estimate", "Estimator", "LoggedData",
           "OPEInputError", "Replay", "SwitchDR", "default_estimators", "diagnostics", "evaluate",
           "run_ope_on_arrays", "run_ope_on_data", "run_ope_on_log", "validate"]
