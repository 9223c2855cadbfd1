"""Fixed-horizon statistics: mean CI, Welch's t-test, difference and relative-lift CIs.

Functions take summary statistics (mean, sample variance with ``ddof=1``, count) as scalars
or broadcastable arrays, so one code path serves a report and a simulation of many peeks.
Valid for one look at a sample size fixed in advance (under peeking use
:mod:`engine.abtest.sequential`). Undefined results (an arm under two observations, a zero
control mean for the lift) are ``nan``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from engine.checks import check_probability


def _arrays(*values):
    return np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))


def _out(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def _where(ok: np.ndarray, x: np.ndarray):
    """``x`` where ``ok``, else nan (a float for scalar input)."""
    return _out(np.where(ok, x, np.nan))


def mean_ci(mean, var, n, alpha: float = 0.05):
    """Two-sided ``1 - alpha`` Student-t confidence interval of a mean, ``(lower, upper)``:
    :math:`\\bar x \\pm t_{1-\\alpha/2,\\, n-1} \\sqrt{s^2 / n}` (``nan`` where ``n < 2``).

    Examples
    --------
    >>> lo, hi = mean_ci(10.0, 4.0, 16)  # t_{0.975, 15} = 2.131450
    >>> round(lo, 5), round(hi, 5)
    (8.93428, 11.06572)
    """
    alpha = check_probability("alpha", alpha)
    mean, var, n = _arrays(mean, var, n)
    ok = n >= 2
    df = np.where(ok, n - 1.0, 1.0)
    half = stats.t.ppf(1.0 - alpha / 2.0, df) * np.sqrt(var / np.where(ok, n, 1.0))
    return _where(ok, mean - half), _where(ok, mean + half)


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of ``diff = mean_t - mean_c``: its standard error
    ``se`` :math:`= \\sqrt{s_t^2/n_t + s_c^2/n_c}`, ``t = diff / se``, the Welch-Satterthwaite
    ``df``, the two-sided ``p_value`` and ``ci``, the two-sided ``1 - alpha`` interval of
    ``diff`` as ``(lower, upper)``. Floats for scalar input, arrays otherwise."""

    diff: float | np.ndarray
    se: float | np.ndarray
    t: float | np.ndarray
    df: float | np.ndarray
    p_value: float | np.ndarray
    ci: tuple


def welch_test(mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = 0.05) -> WelchResult:
    """Welch's t-test and confidence interval for the difference of two means.

    .. math::

        t = \\frac{\\bar x_t - \\bar x_c}{\\sqrt{s_t^2/n_t + s_c^2/n_c}}, \\qquad
        \\nu = \\frac{(s_t^2/n_t + s_c^2/n_c)^2}
                    {\\frac{(s_t^2/n_t)^2}{n_t - 1} + \\frac{(s_c^2/n_c)^2}{n_c - 1}}

    When both sample variances are zero the test degenerates: ``p = 1`` if the means are
    equal, else 0, with ``nu = n_t + n_c - 2``. Arms with fewer than two observations give
    ``nan`` everywhere.

    Examples
    --------
    >>> a = np.array([19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0])
    >>> b = np.array([28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7])
    >>> r = welch_test(b.mean(), b.var(ddof=1), 10, a.mean(), a.var(ddof=1), 10)
    >>> round(r.t, 4), round(r.df, 3), round(r.p_value, 5)  # scipy.stats.ttest_ind agrees
    (2.074, 10.209, 0.06428)
    """
    alpha = check_probability("alpha", alpha)
    mean_t, var_t, n_t, mean_c, var_c, n_c = _arrays(mean_t, var_t, n_t, mean_c, var_c, n_c)
    ok = (n_t >= 2) & (n_c >= 2)
    nt, nc = np.where(ok, n_t, 2.0), np.where(ok, n_c, 2.0)
    vt, vc = var_t / nt, var_c / nc
    v = vt + vc
    diff = mean_t - mean_c
    se = np.sqrt(v)
    degenerate = v <= 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(degenerate, nt + nc - 2.0,
                      v * v / (vt * vt / (nt - 1.0) + vc * vc / (nc - 1.0)))
        t = np.where(degenerate, np.where(diff == 0.0, 0.0, np.sign(diff) * np.inf), diff / se)
        p_t = 2.0 * stats.t.sf(np.abs(t), df)
    p = np.where(degenerate, np.where(diff == 0.0, 1.0, 0.0), p_t)
    half = stats.t.ppf(1.0 - alpha / 2.0, df) * se
    return WelchResult(diff=_where(ok, diff), se=_where(ok, se), t=_where(ok, t),
                       df=_where(ok, df), p_value=_where(ok, p),
                       ci=(_where(ok, diff - half), _where(ok, diff + half)))


def lift_ci(mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = 0.05):
    """Relative lift ``mean_t / mean_c - 1`` with a delta-method normal CI, as
    ``(lift, lower, upper)``.

    .. math::

        \\widehat{\\mathrm{Var}}(\\hat L) \\approx \\frac{s_t^2 / n_t}{\\bar x_c^2}
            + \\frac{\\bar x_t^2\\, s_c^2 / n_c}{\\bar x_c^4}

    (the two arms are independent). The interval is :math:`\\hat L \\pm z_{1-\\alpha/2}
    \\sqrt{\\widehat{\\mathrm{Var}}}`; it is ``nan`` when ``mean_c == 0`` or an arm has fewer
    than two observations.

    Examples
    --------
    >>> lift, lo, hi = lift_ci(0.12, 0.12 * 0.88, 10_000, 0.10, 0.09, 10_000)
    >>> round(lift, 3), round(lo, 4), round(hi, 4)
    (0.2, 0.1049, 0.2951)
    """
    alpha = check_probability("alpha", alpha)
    mean_t, var_t, n_t, mean_c, var_c, n_c = _arrays(mean_t, var_t, n_t, mean_c, var_c, n_c)
    ok = (n_t >= 2) & (n_c >= 2) & (mean_c != 0.0)
    mc = np.where(ok, mean_c, 1.0)
    nt, nc = np.where(ok, n_t, 2.0), np.where(ok, n_c, 2.0)
    lift = mean_t / mc - 1.0
    var = (var_t / nt) / mc**2 + mean_t**2 * (var_c / nc) / mc**4
    half = stats.norm.ppf(1.0 - alpha / 2.0) * np.sqrt(var)
    return _where(ok, lift), _where(ok, lift - half), _where(ok, lift + half)
