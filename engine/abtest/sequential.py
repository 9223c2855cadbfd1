"""Always-valid inference on a difference of means: mixture SPRT and confidence sequence.

The test follows Johari, Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous
Monitoring of A/B Tests" (Operations Research, 2022): with the estimated difference
:math:`\\hat\\Delta = \\bar x_t - \\bar x_c`, its variance
:math:`V = s_t^2/n_t + s_c^2/n_c` and a normal mixing distribution
:math:`\\Delta \\sim N(\\theta_0, \\tau^2)`, the mixture likelihood ratio is

.. math::

    \\Lambda = \\sqrt{\\frac{V}{V + \\tau^2}}
        \\exp\\!\\left(\\frac{\\tau^2 (\\hat\\Delta - \\theta_0)^2}{2 V (V + \\tau^2)}\\right).

Under :math:`H_0: \\Delta = \\theta_0` it is (asymptotically) a nonnegative martingale, so by
Ville's inequality :math:`P(\\exists n: \\Lambda_n \\ge 1/\\alpha) \\le \\alpha`: rejecting the
first time :math:`p_n = \\min_{m \\le n} \\min(1, 1/\\Lambda_m)` falls to ``alpha`` keeps the type-I
error at most ``alpha`` however often one peeks. Inverting the test gives the confidence
sequence :math:`\\hat\\Delta \\pm r` with

.. math::

    r^2 = \\frac{V (V + \\tau^2)}{\\tau^2}
          \\left(\\log\\frac{V + \\tau^2}{V} + 2 \\log\\frac1\\alpha\\right),

which is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and
Ramdas ("Time-uniform central limit theory and asymptotic confidence sequences", Annals of
Statistics, 2024) applied to the difference. Both are asymptotic: they plug in the sample
variances, so ``min_n`` observations per arm are required before the test speaks.

By default :math:`\\tau^2` makes the boundary tightest when the two arms together hold
``target_n`` observations (Waudby-Smith et al.), free of the outcome's scale since
:math:`V (n_t + n_c)` estimates the per-observation variance of the difference:

.. math::

    \\tau^2 = \\left(2\\log\\tfrac1\\alpha + \\log\\big(1 + 2\\log\\tfrac1\\alpha\\big)\\right)
              \\frac{V\\,(n_t + n_c)}{\\mathrm{target\\_n}}

``tau`` fixes the mixture standard deviation in outcome units instead (e.g. the smallest
effect worth detecting). Any choice keeps the guarantee; a poor one costs power only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.checks import check_int, check_positive, check_probability, check_real

from .fixed import _arrays, _out

DEFAULT_TARGET_N = 10_000
"""Default total sample size (both arms) at which the confidence sequence is tightest."""

DEFAULT_MIN_N = 100
"""Default observations per arm before the sequential test reports anything."""


def mixture_tau2(var_diff, n_total, alpha: float = 0.05, target_n: float = DEFAULT_TARGET_N):
    """Default mixture variance :math:`\\tau^2` (see the module docstring) for
    ``var_diff`` :math:`= V` and ``n_total`` :math:`= n_t + n_c`, tuned for level ``alpha``
    and tightest at ``target_n`` observations in the two arms.

    Examples
    --------
    >>> c = 2 * math.log(20) + math.log(1 + 2 * math.log(20))
    >>> math.isclose(mixture_tau2(0.02, 1000, 0.05, 10_000), c * 0.02 * 1000 / 10_000)
    True
    """
    alpha = check_probability("alpha", alpha)
    target_n = check_positive("target_n", target_n)
    c = 2.0 * math.log(1.0 / alpha) + math.log1p(2.0 * math.log(1.0 / alpha))
    return c * np.asarray(var_diff, dtype=float) * np.asarray(n_total, dtype=float) / target_n


def cs_radius(v, tau2, alpha: float):
    """Half-width :math:`r` of the ``1 - alpha`` asymptotic confidence sequence around an
    estimate of variance ``v`` with mixture variance ``tau2`` (see the module docstring);
    :func:`msprt` uses it for a difference of means, :mod:`engine.rollout` for an
    off-policy gain.

    Examples
    --------
    >>> round(float(cs_radius(1e-4, 1e-4, 0.05)), 5)
    0.03656
    """
    return np.sqrt(v * (v + tau2) / tau2 * (np.log1p(tau2 / v) + 2.0 * math.log(1.0 / alpha)))


@dataclass(frozen=True)
class SequentialResult:
    """Outcome of :func:`msprt` at one look: ``diff`` :math:`= \\hat\\Delta`, ``log_lr``
    :math:`= \\log \\Lambda`, ``p_value`` :math:`= \\min(1, 1/\\Lambda)`, ``ci`` the
    ``(lower, upper)`` of the ``1 - alpha`` confidence sequence and ``tau2`` the mixture
    variance used. Take the running minimum of ``p_value`` and the running intersection of
    ``ci`` over looks for the always-valid ones (:func:`engine.abtest.report.ab_report`
    does, given the previous report); rejecting whenever ``p_value`` falls to ``alpha`` is
    valid as is."""

    diff: float | np.ndarray
    log_lr: float | np.ndarray
    p_value: float | np.ndarray
    ci: tuple
    tau2: float | np.ndarray


def msprt(mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = 0.05, *,
          tau: float | None = None, target_n: float = DEFAULT_TARGET_N, theta0: float = 0.0,
          min_n: int = DEFAULT_MIN_N) -> SequentialResult:
    """Mixture SPRT p-value and confidence sequence for ``mean_t - mean_c``.

    Inputs are summary statistics (means, sample variances with ``ddof=1``, counts), scalars
    or broadcastable arrays. ``alpha`` is the level of the confidence sequence (and of the
    default tuning); ``tau``, the mixture standard deviation in outcome units, overrides
    ``target_n``, the total sample size of both arms at which the default mixture is
    tightest; ``theta0`` is the null value of the difference. Until each arm holds ``min_n``
    observations the p-value is 1 and the confidence sequence ``(-inf, inf)``.

    Examples
    --------
    >>> r = msprt(0.12, 0.1056, 10_000, 0.10, 0.09, 10_000)
    >>> round(r.p_value, 6), round(r.ci[0], 4), round(r.ci[1], 4)
    (0.000273, 0.0065, 0.0335)
    >>> msprt(0.10, 0.09, 50, 0.10, 0.09, 50).p_value  # below min_n: no verdict yet
    1.0
    """
    alpha = check_probability("alpha", alpha)
    theta0 = check_real("theta0", theta0)
    min_n = check_int("min_n", min_n, 2)
    tau = None if tau is None else check_positive("tau", tau)
    mean_t, var_t, n_t, mean_c, var_c, n_c = _arrays(mean_t, var_t, n_t, mean_c, var_c, n_c)
    ready = (n_t >= min_n) & (n_c >= min_n)
    nt, nc = np.where(ready, n_t, 2.0), np.where(ready, n_c, 2.0)
    v = var_t / nt + var_c / nc
    diff = mean_t - mean_c
    tau2 = (mixture_tau2(v, nt + nc, alpha, target_n) if tau is None
            else np.full(v.shape, tau * tau))
    # Zero variance in both arms (e.g. no conversion yet anywhere): nothing to learn from.
    live = ready & (v > 0.0) & (tau2 > 0.0)
    v_s, t2 = np.where(live, v, 1.0), np.where(live, tau2, 1.0)
    log_lr = 0.5 * np.log(v_s / (v_s + t2)) + t2 * (diff - theta0) ** 2 / (2.0 * v_s * (v_s + t2))
    log_lr = np.where(live, log_lr, 0.0)
    p = np.minimum(1.0, np.exp(-log_lr))
    radius = np.where(live, cs_radius(v_s, t2, alpha), np.inf)
    return SequentialResult(diff=_out(diff), log_lr=_out(log_lr), p_value=_out(p),
                            ci=(_out(diff - radius), _out(diff + radius)),
                            tau2=_out(np.where(live, tau2, np.nan)))
