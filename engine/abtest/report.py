"""The A/B report: per-variant summaries, treatment-vs-control tests, SRM, as plain JSON.

For each variant: ``n``, ``mean``, ``var``, its ``1 - alpha`` Student-t ``ci`` and its
normalized ``weight``. For each treatment against the control: ``diff`` with Welch's
``diff_ci``; the relative ``lift`` (``mean_t / mean_c - 1``) with a delta-method
``lift_ci``; ``welch`` (``t``, ``df``, two-sided ``p_value``: valid for one look at a sample
size fixed in advance); ``sequential``, the mixture-SPRT always-valid ``p_value`` and
``confidence_sequence`` (valid however often the report is looked at, see
:mod:`engine.abtest.sequential`); ``decision``, ``"significant"`` when the sequential
p-value is at most ``alpha`` (a live report is peeked at), and ``fixed_horizon_significant``,
Welch's verdict for a pre-planned single look. Then ``srm``
(:func:`engine.abtest.srm.srm_check`) and ``warnings``, anything that makes the numbers
untrustworthy. Undefined numbers (too few observations, infinite bounds) are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.checks import check_probability
from engine.errors import ValidationError, ValidationTypeError

from .accumulator import VariantStats
from .assignment import check_name, validate_weights
from .fixed import WelchResult, lift_ci, mean_ci, welch_test
from .sequential import DEFAULT_MIN_N, DEFAULT_TARGET_N, msprt
from .srm import DEFAULT_SRM_THRESHOLD, srm_check


def json_number(x: float | None) -> float | None:
    """JSON-safe float: None, nan and +-inf become None."""
    x = math.nan if x is None else float(x)
    return x if math.isfinite(x) else None


def _interval(lo: float, hi: float) -> list[float | None]:
    return [json_number(lo), json_number(hi)]


def _check_stats(stats: object, weights: Mapping[str, float]) -> dict[str, VariantStats]:
    if not isinstance(stats, Mapping):
        raise ValidationTypeError("stats", "must be a mapping of variant name to VariantStats",
                                  stats)
    if len(stats) == 0:
        raise ValidationError("stats", "must hold at least one variant", stats)
    for key, value in stats.items():
        check_name("stats key", key)
        if key not in weights:
            raise ValidationError("stats", f"names variant {key!r} that is not in weights "
                                  f"{sorted(weights)}", key)
        if not isinstance(value, VariantStats):
            raise ValidationTypeError(f"stats[{key!r}]", "must be a VariantStats", value)
    # A configured variant that has seen no traffic yet is an empty accumulator.
    return {key: stats.get(key, VariantStats()) for key in weights}


def _previous_sequential(previous: object, control: str, alpha: float) -> dict[str, Any]:
    if previous is None:
        return {}
    if not isinstance(previous, Mapping) or "comparisons" not in previous:
        raise ValidationTypeError("previous", "must be a report returned by ab_report, or None",
                                  previous)
    if previous.get("control") != control or previous.get("alpha") != alpha:
        raise ValidationError("previous", f"must come from a report with the same control "
                              f"({control!r}) and alpha ({alpha})",
                              {"control": previous.get("control"), "alpha": previous.get("alpha")})
    return {t: c["sequential"] for t, c in previous["comparisons"].items()}


def _compare(key: str, t: VariantStats, c: VariantStats, alpha: float,
             before: Mapping[str, Any] | None, warnings: list[str], *, tau: float | None,
             target_n: float, min_n: int) -> dict[str, Any]:
    """One treatment against the control: the ``comparisons`` entry of :func:`ab_report`.
    ``before`` is the previous report's sequential entry; ``warnings`` is appended to."""
    args = (t.mean, t.var, t.n, c.mean, c.var, c.n)
    if t.n >= 2 and c.n >= 2:
        welch = welch_test(*args, alpha=alpha)
        lift = lift_ci(*args, alpha=alpha)
        seq = msprt(*args, alpha, tau=tau, target_n=target_n, min_n=min_n)
        s_p, (s_lo, s_hi), s_tau2 = seq.p_value, seq.ci, seq.tau2
    else:
        nan = math.nan
        welch, lift = WelchResult(nan, nan, nan, nan, nan, (nan, nan)), (nan, nan, nan)
        s_p, s_lo, s_hi, s_tau2 = 1.0, -math.inf, math.inf, nan
    if before is not None:
        s_p = min(s_p, before["p_value"])
        b_lo, b_hi = before["confidence_sequence"]
        new_lo = s_lo if b_lo is None else max(s_lo, b_lo)
        new_hi = s_hi if b_hi is None else min(s_hi, b_hi)
        if new_lo > new_hi:
            warnings.append(f"{key}: the running confidence sequence became empty; the "
                            "sequential test's assumptions (stable means, i.i.d. outcomes) "
                            "look violated, showing this look's interval")
        else:
            s_lo, s_hi = new_lo, new_hi
    if t.n < min_n or c.n < min_n:
        warnings.append(f"{key}: fewer than min_n={min_n} observations in an arm; "
                        "the sequential test has not started")
    return {
        "diff": json_number(welch.diff), "diff_ci": _interval(*welch.ci),
        "lift": json_number(lift[0]), "lift_ci": _interval(*lift[1:]),
        "welch": {"t": json_number(welch.t), "df": json_number(welch.df), "p_value": json_number(welch.p_value)},
        "sequential": {"p_value": float(s_p), "confidence_sequence": _interval(s_lo, s_hi),
                       "tau2": json_number(s_tau2),
                       "target_n": None if tau is not None else float(target_n),
                       "min_n": int(min_n)},
        "decision": "significant" if s_p <= alpha else "not significant",
        "fixed_horizon_significant": bool(math.isfinite(welch.p_value)
                                          and welch.p_value < alpha),
    }


def _summary(acc: VariantStats, weight: float, alpha: float) -> dict[str, Any]:
    """A variant's entry in the ``variants`` of :func:`ab_report`."""
    lo, hi = mean_ci(acc.mean, acc.var, acc.n, alpha) if acc.n >= 2 else (math.nan, math.nan)
    return {"n": acc.n, "mean": json_number(acc.mean), "var": json_number(acc.var), "ci": _interval(lo, hi),
            "weight": weight}


def _srm(accs: Mapping[str, VariantStats], share: Mapping[str, float],
         counts: Mapping[str, int] | None, threshold: float,
         warnings: list[str]) -> dict[str, Any]:
    """The ``srm`` entry of :func:`ab_report`, on ``counts`` or else the accumulators' ``n``;
    a mismatch is appended to ``warnings``."""
    srm_counts = {key: acc.n for key, acc in accs.items()} if counts is None else counts
    srm = srm_check(srm_counts, share, threshold)
    if srm["mismatch"]:
        warnings.append(f"sample ratio mismatch (p={srm['p_value']:.3g} < {threshold}): traffic "
                        "did not split as configured; do not trust the comparisons until the "
                        "cause is found")
    return srm


def ab_report(stats: Mapping[str, VariantStats], weights: Mapping[str, float], control: str,
              alpha: float = 0.05, *, previous: Mapping[str, Any] | None = None,
              counts: Mapping[str, int] | None = None, tau: float | None = None,
              target_n: float = DEFAULT_TARGET_N, min_n: int = DEFAULT_MIN_N,
              srm_threshold: float = DEFAULT_SRM_THRESHOLD) -> dict[str, Any]:
    """Compare every treatment with the control; return a JSON-serializable report.

    The report's fields are described in this module's docstring. ``stats`` holds each
    variant's outcome accumulator (a variant missing counts as empty), ``weights`` the
    configured traffic split; every treatment is tested against ``control`` at level
    ``alpha`` on its own (with several, divide ``alpha`` by their number, Bonferroni).
    ``previous``, the last report of this experiment (same control and alpha), makes the
    sequential p-value a running minimum and the confidence sequence a running
    intersection, so conclusions never flip back as data arrive. ``counts``: units
    randomized per variant for the SRM check (default the accumulators' ``n``; give user
    counts when outcomes are per decision and assignment per user), flagged below
    ``srm_threshold``. ``tau``, ``target_n``, ``min_n`` tune the sequential test
    (:func:`engine.abtest.sequential.msprt`).

    Examples
    --------
    >>> import json
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stats = {"control": VariantStats().update(rng.binomial(1, 0.10, 20_000)),
    ...          "treatment": VariantStats().update(rng.binomial(1, 0.12, 20_000))}
    >>> report = ab_report(stats, {"control": 1, "treatment": 1}, control="control")
    >>> cmp = report["comparisons"]["treatment"]
    >>> cmp["decision"], cmp["lift_ci"][0] <= 0.2 <= cmp["lift_ci"][1]
    ('significant', True)
    >>> report["srm"]["mismatch"]
    False
    >>> _ = json.dumps(report, allow_nan=False)
    """
    alpha = check_probability("alpha", alpha)
    share = validate_weights(weights, "weights")
    check_name("control", control)
    if control not in share:
        raise ValidationError("control", f"must be one of the variants {sorted(share)}", control)
    accs = _check_stats(stats, share)
    prev = _previous_sequential(previous, control, alpha)
    warnings: list[str] = []
    comparisons = {key: _compare(key, t, accs[control], alpha, prev.get(key), warnings,
                                 tau=tau, target_n=target_n, min_n=min_n)
                   for key, t in accs.items() if key != control}
    variants = {key: _summary(acc, share[key], alpha) for key, acc in accs.items()}
    return {"control": control, "alpha": alpha, "variants": variants, "comparisons": comparisons,
            "srm": _srm(accs, share, counts, srm_threshold, warnings), "warnings": warnings}


def _f(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _ci(pair: list[float | None], spec: str = ".4g") -> str:
    return f"[{_f(pair[0], spec)}, {_f(pair[1], spec)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
           for r in [header, *rows]]
    return [out[0], "-" * len(out[0]), *out[1:]]


def format_report(report: Mapping[str, Any]) -> str:
    """Render an :func:`ab_report` result as text tables for a terminal.

    Examples
    --------
    >>> stats = {"a": VariantStats().update([0.0, 1.0] * 200),
    ...          "b": VariantStats().update([0.0, 1.0, 1.0] * 140)}
    >>> text = format_report(ab_report(stats, {"a": 1, "b": 1}, control="a"))
    >>> print(text.splitlines()[0])
    A/B report: control 'a', alpha 0.05
    >>> "significant" in text
    True
    """
    if not isinstance(report, Mapping) or not {"variants", "comparisons", "srm"} <= set(report):
        raise ValidationTypeError("report", "must be a dict returned by ab_report", report)
    level = f"{100 * (1 - report['alpha']):g}%"
    lines = [f"A/B report: control {report['control']!r}, alpha {report['alpha']:g}", ""]
    rows = [[name, f"{v['weight']:.3f}", str(v["n"]), _f(v["mean"]), _ci(v["ci"])]
            for name, v in report["variants"].items()]
    lines += _table(["variant", "weight", "n", "mean", f"{level} CI"], rows)
    if report["comparisons"]:
        rows = [[name, _f(c["diff"], "+.4g"), _ci(c["diff_ci"]), _f(c["lift"], "+.2%"),
                 _ci(c["lift_ci"], ".2%"), _f(c["welch"]["p_value"], ".3g"),
                 _f(c["sequential"]["p_value"], ".3g"),
                 _ci(c["sequential"]["confidence_sequence"]), c["decision"]]
                for name, c in report["comparisons"].items()]
        header = ["treatment", "diff", "diff CI", "lift", "lift CI", "Welch p", "seq p",
                  "conf. sequence", "decision"]
        lines += ["", *_table(header, rows)]
    srm = report["srm"]
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    lines += ["", f"SRM: chi2={srm['statistic']:.3g}, df={srm['df']}, "
                  f"p={srm['p_value']:.3g} -> {verdict}"]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
