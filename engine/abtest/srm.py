"""Sample-ratio mismatch (SRM) check: are assignment counts consistent with the split?"""

from __future__ import annotations

from collections.abc import Mapping

from scipy import stats

from engine.checks import check_int, check_probability
from engine.errors import ValidationError, ValidationTypeError

from .assignment import validate_weights

DEFAULT_SRM_THRESHOLD = 0.001
"""p-value below which a mismatch is flagged (the usual, deliberately strict, choice)."""


def srm_check(counts: Mapping[str, int], weights: Mapping[str, float],
              threshold: float = DEFAULT_SRM_THRESHOLD) -> dict[str, object]:
    """Chi-square goodness-of-fit test of observed assignment counts against the split.

    .. math::

        X^2 = \\sum_v \\frac{(O_v - E_v)^2}{E_v}, \\qquad E_v = w_v \\sum_u O_u,

    with ``len(weights) - 1`` degrees of freedom. A small p-value means the traffic did not
    split as configured (a bug in assignment, logging or filtering), which invalidates the
    comparison whatever the other tests say.

    ``counts`` (observed units per variant) must name exactly the variants of ``weights``
    (relative, normalized here); a mismatch is flagged when ``p_value < threshold``.
    Returns ``statistic``, ``df``, ``p_value`` (1 with no observations), ``threshold``,
    ``mismatch`` (bool), ``observed`` and ``expected`` (per variant).

    Examples
    --------
    >>> r = srm_check({"a": 5000, "b": 5200}, {"a": 1, "b": 1})
    >>> round(r["statistic"], 4), round(r["p_value"], 5), r["mismatch"]
    (3.9216, 0.04767, False)
    """
    share = validate_weights(weights, "weights")
    threshold = check_probability("threshold", threshold)
    if not isinstance(counts, Mapping):
        raise ValidationTypeError("counts", "must be a mapping of variant name to count",
                                  counts)
    if set(counts) != set(share):
        raise ValidationError("counts", f"must name exactly the variants {sorted(share)}",
                              sorted(counts))
    observed = {key: check_int(f"counts[{key!r}]", counts[key], 0) for key in share}
    total = sum(observed.values())
    expected = {key: w * total for key, w in share.items()}
    df = len(share) - 1
    if total == 0 or df == 0:
        statistic, p_value = 0.0, 1.0
    else:
        res = stats.chisquare(list(observed.values()), list(expected.values()))
        statistic, p_value = float(res.statistic), float(res.pvalue)
    return {"statistic": statistic, "df": df, "p_value": p_value, "threshold": threshold,
            "mismatch": bool(p_value < threshold), "observed": observed, "expected": expected}
