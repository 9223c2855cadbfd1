"""Off-policy estimators. Each one is a small class with its formula in the docstring.

Notation, per logged round i: reward r_i, action a_i at position k_i, logging propensity
p_i, the target's probability pi_i = pi(a_i | x_i, k_i), the weight w_i = pi_i / p_i, and
for the model-based ones q_i(a) = q-hat(x_i, a, k_i) from a cross-fitted reward model.
All take a :class:`~experiments.ope.base.LoggedData` (see its shapes) and return per-round
terms whose mean (or ratio) is the estimate, so one bootstrap routine serves them all.
"""

from __future__ import annotations

import numpy as np

from experiments.ope.base import LoggedData, OPEInputError


class Estimator:
    """Base: ``estimate(data) -> float``. ``_terms`` gives per-round numerators (and, for
    ratio estimators, denominators); the estimate is their mean (or ratio of sums), so the
    bootstrap resamples rounds and recombines without refitting anything."""

    name = "base"
    needs_model = False

    def _terms(self, d: LoggedData) -> tuple[np.ndarray, ...]:
        """Per-round numerators, and for ratio estimators denominators (and an additive
        per-round part); see :func:`combine`."""
        raise NotImplementedError

    def estimate(self, d: LoggedData) -> float:
        self._check(d)
        return float(combine(*self._terms(d)))

    def _check(self, d: LoggedData) -> None:
        if self.needs_model and d.estimated_rewards is None:
            raise OPEInputError(f"{self.name}: needs estimated_rewards (a reward model)")

    @staticmethod
    def _dm(d: LoggedData) -> np.ndarray:
        """sum_a pi(a | x_i, k_i) q_i(a): the model's value of the target on round i."""
        idx = np.arange(d.n_rounds)
        return (d.action_dist[idx, :, d.position] * d.estimated_rewards[idx, :, d.position]).sum(1)

    @staticmethod
    def _q_logged(d: LoggedData) -> np.ndarray:
        idx = np.arange(d.n_rounds)
        return d.estimated_rewards[idx, d.action, d.position]


class Replay(Estimator):
    """Replay (rejection sampling): ``mean(r_i | a_i = argmax pi_i)`` — the mean reward on the
    rounds where the logged action is the one the target would pick (exact for a
    deterministic target under uniform logging; biased otherwise)."""

    name = "Replay"

    def _terms(self, d):
        idx = np.arange(d.n_rounds)
        best = d.action_dist[idx, :, d.position].argmax(axis=1)
        match = (best == d.action).astype(float)
        return d.reward * match, match


class IPS(Estimator):
    """Inverse propensity scoring: ``mean(w_i r_i)``, with ``w_i`` clipped at ``clip``."""

    name = "IPS"

    def __init__(self, clip: float | None = None):
        if clip is not None and not clip > 0:
            raise ValueError(f"clip: must be > 0 (got {clip!r})")
        self.clip = clip
        if clip is not None:
            self.name = f"IPS(clip={clip:g})"

    def _terms(self, d):
        w = d.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        return w * d.reward, None


class SNIPS(Estimator):
    """Self-normalized IPS: ``sum(w_i r_i) / sum(w_i)``."""

    name = "SNIPS"

    def _terms(self, d):
        w = d.weights()
        return w * d.reward, w


class DM(Estimator):
    """Direct method: ``mean(sum_a pi(a | x_i, k_i) q_i(a))``."""

    name = "DM"
    needs_model = True

    def _terms(self, d):
        return self._dm(d), None


class DR(Estimator):
    """Doubly robust: ``mean(DM_i + w_i (r_i - q_i(a_i)))``."""

    name = "DR"
    needs_model = True

    def _terms(self, d):
        return self._dm(d) + d.weights() * (d.reward - self._q_logged(d)), None


class SNDR(Estimator):
    """Self-normalized DR: ``mean(DM_i) + sum(w_i (r_i - q_i(a_i))) / sum(w_i)``, i.e. DR with
    the weights normalized to mean 1 (as SNIPS normalizes IPS)."""

    name = "SNDR"
    needs_model = True

    def _terms(self, d):
        w = d.weights()
        return w * (d.reward - self._q_logged(d)), w, self._dm(d)


class SwitchDR(Estimator):
    """Switch-DR (Wang et al., 2017): ``mean(DM_i + 1[w_i <= tau] w_i (r_i - q_i(a_i)))`` —
    the correction is dropped where the weight is too large to trust."""

    needs_model = True

    def __init__(self, tau: float = 10.0):
        if not tau > 0:
            raise ValueError(f"tau: must be > 0 (got {tau!r})")
        self.tau = tau
        self.name = f"SwitchDR(tau={tau:g})"

    def _terms(self, d):
        w = d.weights()
        return self._dm(d) + (w <= self.tau) * w * (d.reward - self._q_logged(d)), None


class DROS(Estimator):
    """DR with optimistic shrinkage (Su et al., 2020): weights shrunk to
    ``w' = lambda w / (w^2 + lambda)``, then ``mean(DM_i + w'_i (r_i - q_i(a_i)))``."""

    needs_model = True

    def __init__(self, lam: float = 10.0):
        if not lam > 0:
            raise ValueError(f"lam: must be > 0 (got {lam!r})")
        self.lam = lam
        self.name = f"DR-OS(lambda={lam:g})"

    def _terms(self, d):
        w = d.weights()
        shrunk = self.lam * w / (w ** 2 + self.lam)
        return self._dm(d) + shrunk * (d.reward - self._q_logged(d)), None


def default_estimators(clip: float = 100.0, tau: float = 10.0, lam: float = 10.0) -> list[Estimator]:
    return [Replay(), IPS(), IPS(clip=clip), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau), DROS(lam)]


def combine(num: np.ndarray, den: np.ndarray | None = None, add: np.ndarray | None = None,
            axis: int = -1) -> float | np.ndarray:
    """The estimate from per-round terms: ``mean(num)``, or ``sum(num) / sum(den)``, plus
    ``mean(add)`` when given (SNDR's direct-method part)."""
    if den is None:
        value = num.mean(axis=axis)
    else:
        total = den.sum(axis=axis)
        value = np.where(total > 0, num.sum(axis=axis) / np.where(total > 0, total, 1.0), np.nan)
    if add is not None:
        value = value + add.mean(axis=axis)
    return value
