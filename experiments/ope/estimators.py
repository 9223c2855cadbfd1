"""The estimator contract and the weighting estimators: Replay, IPS (optionally clipped), SNIPS.

Notation, per logged round i: reward r_i, action a_i at position k_i, logging propensity
p_i = ``pscore[i]``, the target's probability pi_i = ``action_dist[i, a_i, k_i]``, the
importance weight w_i = pi_i / p_i and, for the model-based estimators in
:mod:`experiments.ope.model_based`, q_i(a) = ``estimated_rewards[i, a, k_i]``.

Every estimator reduces to per-round terms: ``mean(num)``, or ``sum(num) / sum(den)`` for
self-normalized ones, plus ``mean(add)`` (see :func:`~experiments.ope.bootstrap.combine`),
so one bootstrap routine gives every interval without refitting anything.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.checks import check_real
from engine.errors import ValidationError
from experiments.ope.base import Interval, LoggedData, OPEInputError, validate
from experiments.ope.bootstrap import (
    Terms,
    bootstrap_samples,
    check_bootstrap_args,
    combine,
    percentile_interval,
)


class Estimator:
    """Base class. Public methods validate their inputs, then call ``_terms``.

    Subclasses implement ``_terms(data) -> (num, den, add)`` (per-round arrays; ``den`` and
    ``add`` may be None) and, when their weights differ from the raw ``w_i``,
    ``effective_weights``. Constructor arguments are stored under their own names.

    Examples
    --------
    A new estimator needs only its per-round terms; here the logging policy's own value:

    >>> import numpy as np
    >>> class OnPolicy(Estimator):
    ...     def _terms(self, d):
    ...         return d.reward, None, None
    >>> dist = np.full((4, 2, 1), 0.5)
    >>> OnPolicy().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5] * 4, dist)
    0.75
    >>> OnPolicy().estimate_interval([1, 0, 1, 1], [0, 1, 1, 0], [0.5] * 4, dist,
    ...                              n_bootstrap=50).estimate
    0.75
    """

    needs_model = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"

    # -- public API, Open Bandit Pipeline style -------------------------------------------
    def estimate_policy_value(self, reward: npt.ArrayLike, action: npt.ArrayLike,
                              pscore: npt.ArrayLike, action_dist: npt.ArrayLike,
                              position: npt.ArrayLike | None = None,
                              estimated_rewards_by_reg_model: npt.ArrayLike | None = None
                              ) -> float:
        """The estimated value of the target policy.

        Parameters
        ----------
        reward, action, pscore, position
            Arrays of shape (n_rounds,); ``position`` defaults to all 0.
        action_dist
            The target's probabilities, shape (n_rounds, n_actions, len_list).
        estimated_rewards_by_reg_model
            A reward model's predictions, same shape as ``action_dist``; required by the
            model-based estimators, ignored (but validated) by the others.
        """
        return self.estimate(validate(reward, action, pscore, action_dist, position,
                                      estimated_rewards_by_reg_model))

    def estimate_interval(self, reward: npt.ArrayLike, action: npt.ArrayLike,
                          pscore: npt.ArrayLike, action_dist: npt.ArrayLike,
                          position: npt.ArrayLike | None = None,
                          estimated_rewards_by_reg_model: npt.ArrayLike | None = None, *,
                          alpha: float = 0.05, n_bootstrap: int = 200,
                          random_state: int | None = 0) -> Interval:
        """The estimate with a ``1 - alpha`` percentile bootstrap interval over rounds.

        ``random_state`` seeds ``numpy.random.default_rng`` (0 by default, so the answer is
        reproducible); the reward model's predictions are held fixed.
        """
        data = validate(reward, action, pscore, action_dist, position,
                        estimated_rewards_by_reg_model)
        return self.interval(data, alpha=alpha, n_bootstrap=n_bootstrap,
                             random_state=random_state)

    # -- on validated data -----------------------------------------------------------------
    def estimate(self, data: LoggedData) -> float:
        """The estimate on :class:`~experiments.ope.base.LoggedData` from ``validate``."""
        return float(combine(*self.terms(data)))

    def interval(self, data: LoggedData, *, alpha: float = 0.05, n_bootstrap: int = 200,
                 random_state: int | None = 0) -> Interval:
        check_bootstrap_args(n_bootstrap, alpha)
        terms = self.terms(data)
        samples = bootstrap_samples([terms], n_bootstrap, np.random.default_rng(random_state))
        low, high = percentile_interval(samples[0], alpha)
        return Interval(float(combine(*terms)), low, high)

    def terms(self, data: LoggedData) -> Terms:
        """Per-round ``(num, den, add)``; checks that a model-based estimator has a model."""
        if self.needs_model and data.estimated_rewards is None:
            raise OPEInputError("estimated_rewards_by_reg_model", f"{self.name} needs a reward "
                                "model's predictions of shape (n_rounds, n_actions, len_list) "
                                "(got None)")
        return self._terms(data)

    def effective_weights(self, data: LoggedData) -> np.ndarray | None:
        """The weights this estimator applies to observed rewards (None: no weighting)."""
        return data.weights()

    def _terms(self, data: LoggedData) -> Terms:
        raise NotImplementedError


def _positive(value, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not check_real(name, value) > 0:
        raise ValidationError(name, "must be > 0", value)


class Replay(Estimator):
    """Replay (Li et al., 2011): the mean reward on the rounds where the target "replays" the
    logged action, ``V = sum(pi_i r_i) / sum(pi_i)``.

    For a deterministic target this is the mean reward on the rounds whose logged action is
    the target's choice; for a stochastic one each round counts with the probability that a
    draw from the target matches it. Unbiased when logging is uniform over actions; ignores
    ``pscore`` otherwise (and is then biased). Effective weights: ``pi_i``.

    Examples
    --------
    >>> import numpy as np
    >>> dist = np.tile([[0.0], [1.0]], (4, 1, 1))       # (4, 2, 1): always action 1
    >>> Replay().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist)
    0.5
    """

    def _terms(self, d: LoggedData) -> Terms:
        pi = d.target_prob()
        return pi * d.reward, pi, None

    def effective_weights(self, d: LoggedData) -> np.ndarray:
        return d.target_prob()


class IPS(Estimator):
    """Inverse propensity scoring: ``V = mean(min(w_i, clip) r_i)``.

    Unbiased without clipping (``clip=None``, the default) when the logging policy gives
    every action the target can take a positive probability; clipping trades a downward
    bias (for rewards >= 0) for lower variance.

    Parameters
    ----------
    clip
        Upper bound on the weights, > 0; None for no clipping.

    Examples
    --------
    >>> import numpy as np
    >>> dist = np.tile([[0.0], [1.0]], (4, 1, 1))       # always action 1: w = [0, 1.25, 2.5, 0]
    >>> IPS().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist)
    0.625
    >>> IPS(clip=2.0).estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist)
    0.5
    """

    def __init__(self, clip: float | None = None):
        _positive(clip, "clip", allow_none=True)
        self.clip = clip

    @property
    def name(self) -> str:
        return "IPS" if self.clip is None else f"IPS(clip={self.clip:g})"

    def effective_weights(self, d: LoggedData) -> np.ndarray:
        w = d.weights()
        return w if self.clip is None else np.minimum(w, self.clip)

    def _terms(self, d: LoggedData) -> Terms:
        return self.effective_weights(d) * d.reward, None, None


class SNIPS(Estimator):
    """Self-normalized IPS (Swaminathan & Joachims, 2015): ``V = sum(w_i r_i) / sum(w_i)``.

    Consistent, slightly biased, usually far less variable than IPS; invariant to rescaling
    all weights, so it tolerates propensities known only up to a constant.

    Examples
    --------
    >>> import numpy as np
    >>> dist = np.tile([[0.0], [1.0]], (4, 1, 1))
    >>> round(SNIPS().estimate_policy_value([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5], dist), 4)
    0.6667
    """

    def _terms(self, d: LoggedData) -> Terms:
        w = d.weights()
        return w * d.reward, w, None
