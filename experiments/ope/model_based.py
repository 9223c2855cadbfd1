"""Estimators that use a reward model q: DM, DR, SNDR, Switch-DR and DR-OS.

With DM_i = ``sum_a pi(a | x_i, k_i) q_i(a)`` (the model's value of the target on round i,
at its logged position) and the residual e_i = r_i - q_i(a_i), all but DM add a weighted
residual correction to DM; they differ only in the weight applied to e_i. The
predictions come as ``estimated_rewards_by_reg_model`` of shape (n_rounds, n_actions,
len_list), ideally cross-fitted (:func:`experiments.ope.reward_model.cross_fit`).

In the examples below the model predicts 0.5 everywhere, the target always plays action
1, and the weights are w = [0, 1.25, 2.5, 0].
"""

from __future__ import annotations

import numpy as np

from experiments.ope.base import LoggedData
from experiments.ope.bootstrap import Terms
from experiments.ope.estimators import Estimator, _positive


def _dm(d: LoggedData) -> np.ndarray:
    idx = np.arange(d.n_rounds)
    return (d.target_slice() * d.estimated_rewards[idx, :, d.position]).sum(axis=1)


def _residual(d: LoggedData) -> np.ndarray:
    return d.reward - d.estimated_rewards[np.arange(d.n_rounds), d.action, d.position]


class DM(Estimator):
    """Direct method: ``V = mean_i sum_a pi(a | x_i, k_i) q_i(a)``.

    Low variance, but biased by whatever the reward model gets wrong. Its rounds are weighted
    alike (the reported effective sample size is the number of rounds).

    Examples
    --------
    >>> import numpy as np
    >>> dist, q = np.tile([[0.0], [1.0]], (4, 1, 1)), np.full((4, 2, 1), 0.5)
    >>> DM().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist,
    ...                            estimated_rewards_by_reg_model=q)
    0.5
    """

    needs_model = True

    def effective_weights(self, d: LoggedData) -> None:
        return None

    def _terms(self, d: LoggedData) -> Terms:
        return _dm(d), None, None


class DR(Estimator):
    """Doubly robust (Dudik et al., 2011): ``V = mean_i (DM_i + w_i e_i)``.

    Unbiased when the propensities are right (whatever the model), and less variable than
    IPS when the model explains part of the reward. Switch-DR and DR-OS are this estimator
    with other weights w'_i: they override ``effective_weights`` only.

    Examples
    --------
    >>> import numpy as np
    >>> dist, q = np.tile([[0.0], [1.0]], (4, 1, 1)), np.full((4, 2, 1), 0.5)
    >>> DR().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist,
    ...                            estimated_rewards_by_reg_model=q)
    0.65625
    """

    needs_model = True

    def _terms(self, d: LoggedData) -> Terms:
        return _dm(d) + self.effective_weights(d) * _residual(d), None, None


class SNDR(Estimator):
    """Self-normalized DR: ``V = mean_i DM_i + sum_i w_i e_i / sum_i w_i``.

    DR with the weights normalized to mean 1, as SNIPS normalizes IPS: consistent, and more
    stable than DR when a few weights are large.

    Examples
    --------
    >>> import numpy as np
    >>> dist, q = np.tile([[0.0], [1.0]], (4, 1, 1)), np.full((4, 2, 1), 0.5)
    >>> round(SNDR().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5],
    ...                                    dist, estimated_rewards_by_reg_model=q), 4)
    0.6667
    """

    needs_model = True

    def _terms(self, d: LoggedData) -> Terms:
        w = d.weights()
        return w * _residual(d), w, _dm(d)


class SwitchDR(DR):
    """Switch-DR (Wang et al., 2017): ``V = mean_i (DM_i + 1[w_i <= tau] w_i e_i)``.

    The correction is dropped on rounds whose weight exceeds ``tau``, where it would add
    more variance than it removes bias: ``tau = inf`` is DR, ``tau -> 0`` is DM.

    Parameters
    ----------
    tau
        Weight threshold, > 0 (default 10: corrections with weights above 10 are dropped).

    Examples
    --------
    >>> import numpy as np
    >>> dist, q = np.tile([[0.0], [1.0]], (4, 1, 1)), np.full((4, 2, 1), 0.5)
    >>> SwitchDR(tau=2.0).estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5],
    ...                                         dist, estimated_rewards_by_reg_model=q)
    0.34375
    """

    def __init__(self, tau: float = 10.0):
        _positive(tau, "tau")
        self.tau = tau

    @property
    def name(self) -> str:
        return f"SwitchDR(tau={self.tau:g})"

    def effective_weights(self, d: LoggedData) -> np.ndarray:
        w = d.weights()
        return np.where(w <= self.tau, w, 0.0)


class DROS(DR):
    """DR with optimistic shrinkage (Su et al., 2020):
    ``V = mean_i (DM_i + w'_i e_i)`` with ``w'_i = lam w_i / (w_i^2 + lam)``.

    Shrinks large weights smoothly towards 0 (``w' <= sqrt(lam) / 2``); ``lam -> inf`` is DR,
    ``lam -> 0`` is DM. The default ``lam = 100`` leaves weights below about 3 nearly
    untouched (within 10%) and caps every weight at 5.

    Parameters
    ----------
    lam
        Shrinkage strength, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> dist, q = np.tile([[0.0], [1.0]], (4, 1, 1)), np.full((4, 2, 1), 0.5)
    >>> round(DROS(lam=1.0).estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0],
    ...       [0.5, 0.8, 0.4, 0.5], dist, estimated_rewards_by_reg_model=q), 5)
    0.48213
    """

    def __init__(self, lam: float = 100.0):
        _positive(lam, "lam")
        self.lam = lam

    @property
    def name(self) -> str:
        return f"DR-OS(lambda={self.lam:g})"

    def effective_weights(self, d: LoggedData) -> np.ndarray:
        w = d.weights()
        return self.lam * w / (w ** 2 + self.lam)
