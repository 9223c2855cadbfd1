"""Off-policy evaluation of whole sessions: per-decision importance sampling (PDIS), its
weighted variant (WPDIS) and the logging policy's own return, with bootstrap intervals over
sessions and the effective sample size of the session weights.

A logged session i is a sequence of decisions t = 0 .. T_i - 1 (``T_i`` varies). For the n
decisions of a log, flat and in order:

=================  =======================================================================
``session``        (n,) session ids; the decisions of one session are contiguous and in
                   time order (ints or strings)
``reward``         (n,) observed rewards r_{i,t}
``pscore``         (n,) the logging policy's probability of the logged action, in (0, 1]
``target_prob``    (n,) the target policy's probability of the logged action given what it
                   would see at that decision (the user's history so far), in [0, 1]
``gamma``          discount in [0, 1] (default 1: the undiscounted return)
=================  =======================================================================

Notation: w_{i,t} = target_prob / pscore, the cumulative weight
rho_{i,t} = prod_{u <= t} w_{i,u}, and, after a session ends, rho_{i,t} = rho_{i,T_i - 1}
with r_{i,t} = 0 (an ended session sits in an absorbing state; the ending itself is part of
what the weights correct for). The estimand is the target's expected per-session return
``E_pi[sum_t gamma^t r_t]``.

The session, not the decision, is the unit of resampling: the bootstrap draws n_sessions
sessions with replacement, and the same draws serve every estimator (common random
numbers), as in :mod:`experiments.ope.bootstrap`. Errors are
:class:`~experiments.ope.base.OPEInputError` naming the input.

Examples
--------
>>> r = evaluate_sessions(session=[0, 0, 1, 2, 2, 2], reward=[1, 1, 0, 1, 0, 1],
...                       pscore=[0.5, 0.5, 0.5, 0.25, 0.5, 0.5],
...                       target_prob=[1.0, 0.5, 0.5, 0.5, 0.25, 1.0], n_bootstrap=50)
>>> round(r["PDIS"].estimate, 4), round(r["WPDIS"].estimate, 4), round(r["Logged"].estimate, 4)
(2.6667, 1.7, 1.3333)
>>> r.warning.startswith("unreliable: effective sample size 2.8 of 3 sessions")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from engine.checks import check_number
from experiments.ope.base import Estimate, Interval, OPEInputError
from experiments.ope.bootstrap import (
    CHUNK_ENTRIES,
    check_bootstrap_args,
    effective_sample_size,
    percentile_interval,
)
from experiments.ope.report import Estimates
from experiments.ope.session_data import SessionLog, validate_sessions


class SessionEstimator:
    """Base class. Public methods validate their inputs, then call ``_replicates``.

    Subclasses implement ``_replicates(log, counts)``: the estimate on each of B resamples
    of the sessions, given ``counts`` (B, n_sessions), how many times each session was
    drawn (a row of ones is the log itself). Every estimator is a function of these
    multiplicities, so one set of draws serves them all.
    """

    #: Whether the estimator applies importance weights (False: the logging policy's value).
    weighted = True

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def estimate_policy_value(self, session: npt.ArrayLike, reward: npt.ArrayLike,
                              pscore: npt.ArrayLike, target_prob: npt.ArrayLike,
                              gamma: float = 1.0) -> float:
        """The estimated per-session return; inputs as in the module's table."""
        return self.estimate(validate_sessions(session, reward, pscore, target_prob, gamma))

    def estimate_interval(self, session: npt.ArrayLike, reward: npt.ArrayLike,
                          pscore: npt.ArrayLike, target_prob: npt.ArrayLike,
                          gamma: float = 1.0, *, alpha: float = 0.05, n_bootstrap: int = 200,
                          random_state: int | None = 0) -> Interval:
        """The estimate with a ``1 - alpha`` percentile bootstrap interval over sessions
        (``random_state`` seeds ``numpy.random.default_rng``)."""
        log = validate_sessions(session, reward, pscore, target_prob, gamma)
        check_bootstrap_args(n_bootstrap, alpha)
        samples = session_bootstrap(log, [self], n_bootstrap,
                                    np.random.default_rng(random_state))[0]
        return Interval(self.estimate(log), *percentile_interval(samples, alpha))

    def estimate(self, log: SessionLog) -> float:
        """The estimate on a validated :class:`SessionLog`."""
        return float(self._replicates(log, np.ones((1, log.n_sessions)))[0])

    def _replicates(self, log: SessionLog, counts: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Logged(SessionEstimator):
    """The logging policy's own mean per-session return (on-policy baseline):
    ``V = (1/N) sum_i sum_t gamma^t r_{i,t}`` over the N logged sessions.

    Unbiased for the logging policy, not the target: it is the figure the target must beat.

    Examples
    --------
    >>> Logged().estimate_policy_value([0, 0, 1], [1, 1, 0], [0.5] * 3, [1.0] * 3, gamma=0.5)
    0.75
    """

    weighted = False

    def _replicates(self, log: SessionLog, counts: np.ndarray) -> np.ndarray:
        ret = np.bincount(log.index, log.gamma ** log.step * log.reward, log.n_sessions)
        return counts @ ret / log.n_sessions


class PDIS(SessionEstimator):
    """Per-decision importance sampling (Precup, Sutton & Singh, 2000):
    ``V = (1/N) sum_i sum_t gamma^t rho_{i,t} r_{i,t}``, ``rho_{i,t} = prod_{u<=t} w_{i,u}``.

    Unbiased when the propensities are right and the logging policy gives a positive
    probability to every action the target can take (each reward is weighted only by the
    decisions before and at it, so its variance is below whole-session IS). The variance
    grows roughly geometrically with session length when the policies differ; watch the
    effective sample size.

    Examples
    --------
    Weights (2, 1) and (2): cumulative weights (2, 2) and (2), weighted returns 4 and 0.

    >>> PDIS().estimate_policy_value([0, 0, 1], [1, 1, 0], [0.5] * 3, [1.0, 0.5, 1.0])
    2.0
    """

    def _replicates(self, log: SessionLog, counts: np.ndarray) -> np.ndarray:
        ret = np.bincount(log.index, log.gamma ** log.step * log.rho * log.reward,
                          log.n_sessions)
        return counts @ ret / log.n_sessions


class WPDIS(SessionEstimator):
    """Weighted (self-normalized) per-decision importance sampling (Precup et al., 2000;
    Thomas, 2015, eq. 3.17):

    ``V = sum_t gamma^t [sum_i rho_{i,t} r_{i,t}] / [sum_i rho_{i,t}]``

    i.e. each step's cumulative weights divided by their mean over all N sessions at that
    step. Sessions that ended before step t count in the denominator with their final
    weight (and reward 0), so the step-t term estimates ``E_pi[r_t]`` with ended sessions
    contributing 0: normalizing over the sessions still running instead would estimate the
    reward of the sessions that survive, which is inconsistent when the target changes how
    long sessions last.

    Biased for finite N (a ratio of means) but consistent: each step's ratio converges to
    ``E_mu[rho_t r_t] / E_mu[rho_t] = E_pi[r_t]`` since ``E_mu[rho_t] = 1``; usually far
    less variable than PDIS, and invariant to rescaling the weights of a step. A step where
    every session's weight is 0 has no support in the log and makes the estimate NaN.

    Examples
    --------
    The log of :class:`PDIS`'s example: step 0 gives (2 * 1 + 2 * 0) / (2 + 2), step 1
    gives 2 * 1 / (2 + 2), the ended session counting with its final weight 2.

    >>> WPDIS().estimate_policy_value([0, 0, 1], [1, 1, 0], [0.5] * 3, [1.0, 0.5, 1.0])
    1.0
    """

    def _replicates(self, log: SessionLog, counts: np.ndarray) -> np.ndarray:
        num = (log.by_step(log.rho * log.reward).T @ counts.T).T     # (B, horizon)
        running = (log.by_step(log.rho).T @ counts.T).T
        ends = np.cumsum(log.lengths) - 1
        ended = sparse.csr_matrix(                                  # final weight, from T_i on
            (log.rho[ends], (np.arange(log.n_sessions), log.lengths)),
            shape=(log.n_sessions, log.horizon + 1))[:, :log.horizon]
        den = running + np.cumsum((ended.T @ counts.T).T, axis=1)
        safe = np.where(den > 0, den, 1.0)
        steps = np.where(den > 0, num / safe, np.nan)
        return steps @ log.discounts()


def default_session_estimators() -> list[SessionEstimator]:
    """PDIS, WPDIS and the logging policy's own return."""
    return [PDIS(), WPDIS(), Logged()]


def session_bootstrap(log: SessionLog, estimators: Sequence[SessionEstimator],
                      n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of every estimator on the same resamples of the sessions, shape
    (len(estimators), n_bootstrap); drawn in chunks of about
    :data:`~experiments.ope.bootstrap.CHUNK_ENTRIES` entries."""
    s = log.n_sessions
    out = np.empty((len(estimators), n_bootstrap))
    per = max(1, CHUNK_ENTRIES // s)
    for start in range(0, n_bootstrap, per):
        stop = min(n_bootstrap, start + per)
        idx = rng.integers(s, size=(stop - start, s))
        flat = (idx + s * np.arange(stop - start)[:, None]).ravel()
        counts = np.bincount(flat, minlength=(stop - start) * s).reshape(stop - start, s)
        for j, est in enumerate(estimators):
            out[j, start:stop] = est._replicates(log, counts.astype(float))
    return out


def ess_warning(ess: float, n_sessions: int, max_weight: float, min_ess: float = 30.0,
                min_ess_share: float = 0.1) -> str | None:
    """A sentence saying that the weighted estimates are unreliable, and why, when the
    effective sample size is below ``min_ess`` sessions or below ``min_ess_share`` of them;
    else None.

    Examples
    --------
    >>> ess_warning(500.0, 1000, 4.0) is None
    True
    >>> print(ess_warning(12.0, 1000, 250.0))  # doctest: +ELLIPSIS
    unreliable: effective sample size 12.0 of 1000 sessions (1.2%, below 10% or 30): a few ...
    >>> print(ess_warning(9.5, 10, 1.5))  # doctest: +ELLIPSIS
    unreliable: effective sample size 9.5 of 10 sessions (95.0%, below 10% or 30): the log ...
    """
    if ess >= min_ess and ess >= min_ess_share * n_sessions:
        return None
    head = (f"unreliable: effective sample size {ess:.1f} of {n_sessions} sessions "
            f"({ess / n_sessions:.1%}, below {min_ess_share:.0%} or {min_ess:g}): ")
    if ess == 0:
        return head + ("no session has a positive weight (the target gives some logged "
                       "action of every session probability 0), so the log says nothing about "
                       "the target; evaluate a target the logging policy covers")
    if ess < min_ess_share * n_sessions:
        return head + (f"a few sessions carry most of the weight (largest cumulative weight "
                       f"{max_weight:.3g}) because the target's choices over whole sessions "
                       "differ too much from the logging policy's, so PDIS and WPDIS rest on "
                       "those few and their intervals understate the error; log more "
                       "sessions, evaluate a target closer to the logging policy, or discount "
                       "(gamma < 1) to shorten the effective horizon")
    return head + ("the log has too few sessions for the estimates and their bootstrap "
                   "intervals to be trusted; log more sessions")


@dataclass
class SessionOPEResult(Estimates):
    """The estimates of one session evaluation, in estimator order; iterate over it or
    index it by position or name for :class:`~experiments.ope.base.Estimate` records.

    Each record's ``n_rounds`` counts sessions (the resampled unit), its ``ess``,
    ``max_weight``, ``mean_weight`` and ``zero_target_share`` describe the session
    weights (see :func:`evaluate_sessions`), and its ``extra`` holds ``n_decisions``,
    ``gamma``, the interval method and ``warning``.
    """

    estimates: list[Estimate]
    n_sessions: int
    n_decisions: int
    gamma: float
    n_bootstrap: int
    alpha: float
    warning: str | None = None

    def to_table(self) -> str:
        """A fixed-width table for the terminal, with the warning (if any) below it."""
        level = f"{1 - self.alpha:.0%} interval"
        head = (f"{'estimator':<12}{'return':>10}{level:>24}{'ESS':>10}{'max w':>10}"
                f"{'mean w':>8}{'w=0':>7}")
        lines = [f"{self.n_sessions} sessions, {self.n_decisions} decisions, gamma "
                 f"{self.gamma:g}; per-session return; percentile bootstrap over sessions, "
                 f"{self.n_bootstrap} resamples", head, "-" * len(head)]
        for e in self.estimates:
            lines.append(f"{e.name:<12}{e.estimate:>10.4f}    [{e.low:>8.4f}, {e.high:>8.4f}]"
                         f"{e.ess:>10.1f}{e.max_weight:>10.3g}{e.mean_weight:>8.3f}"
                         f"{e.zero_target_share:>7.1%}")
        lines.append("ESS, mean w and w=0: each session's final cumulative weight; max w: "
                     "the largest cumulative weight of any decision")
        if self.warning:
            lines.append(f"WARNING: {self.warning}")
        return "\n".join(lines)


def evaluate_sessions(session: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike,
                      target_prob: npt.ArrayLike, gamma: float = 1.0, *,
                      estimators: Sequence[SessionEstimator] | None = None,
                      n_bootstrap: int = 200, alpha: float = 0.05, seed: int = 0,
                      min_ess: float = 30.0, min_ess_share: float = 0.1
                      ) -> SessionOPEResult:
    """Estimate the target's per-session return with ``1 - alpha`` percentile bootstrap
    intervals over sessions (``n_bootstrap`` resamples drawn from ``default_rng(seed)``,
    shared by every estimator) and the session-weight diagnostics.

    Diagnostics, shared by the estimators: ``ess`` is Kish's effective sample size
    ``(sum_i v_i)^2 / sum_i v_i^2`` of each session's final cumulative weight
    ``v_i = rho_{i, T_i - 1}`` (the whole session's likelihood ratio, the most spread out of
    its cumulative weights; the logging baseline reports n_sessions); ``max_weight`` is the
    largest cumulative weight of any decision, ``mean_weight`` the mean of ``v`` (about 1
    when the propensities are right and the logging policy covers the target) and
    ``zero_target_share`` the share of sessions with ``v_i = 0``. ``warning`` (see
    :func:`ess_warning`) is set when the ESS is below ``min_ess`` sessions or
    ``min_ess_share`` of them. Inputs as in the module's table; ``estimators`` defaults to
    :func:`default_session_estimators`.
    """
    log = validate_sessions(session, reward, pscore, target_prob, gamma)
    check_bootstrap_args(n_bootstrap, alpha)
    check_number("min_ess", min_ess, low=0.0)
    check_number("min_ess_share", min_ess_share, low=0.0, high=1.0)
    chosen = default_session_estimators() if estimators is None else list(estimators)
    if not chosen:
        raise OPEInputError("estimators", "the list is empty")
    for e in chosen:
        if not isinstance(e, SessionEstimator):
            raise OPEInputError("estimators", f"each must be a SessionEstimator (got {e!r})")
    samples = session_bootstrap(log, chosen, n_bootstrap, np.random.default_rng(seed))
    v = log.final_weights()
    ess = effective_sample_size(v)
    max_weight = float(log.rho.max())
    warning = ess_warning(ess, log.n_sessions, max_weight, min_ess, min_ess_share)
    out = []
    for est, s in zip(chosen, samples, strict=True):
        low, high = percentile_interval(s, alpha)
        out.append(Estimate(est.name, est.estimate(log), low, high,
                            ess if est.weighted else float(log.n_sessions), max_weight,
                            float(v.mean()), float((v == 0).mean()), log.n_sessions,
                            confidence=1 - alpha,
                            extra={"interval": "percentile bootstrap over sessions",
                                   "n_decisions": log.n_decisions, "gamma": log.gamma,
                                   "warning": warning if est.weighted else None}))
    return SessionOPEResult(out, log.n_sessions, log.n_decisions, log.gamma, n_bootstrap,
                            alpha, warning)
