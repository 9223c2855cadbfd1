"""Known-answer and contract tests for engine.abtest (the online A/B statistics)."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.abtest import (
    VariantStats,
    ab_report,
    assign_variant,
    format_report,
    hash_unit,
    lift_ci,
    mean_ci,
    msprt,
    srm_check,
    validate_weights,
    welch_test,
)
from engine.errors import ValidationError

# Welch's example data (two small samples with unequal variances).
A = np.array([19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0])
B = np.array([28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7])


# --------------------------------------------------------------------------- fixed horizon


def test_welch_known_answer():
    r = welch_test(B.mean(), B.var(ddof=1), 10, A.mean(), A.var(ddof=1), 10)
    # By hand: diff / sqrt(s_b^2/10 + s_a^2/10), Welch-Satterthwaite df.
    vb, va = B.var(ddof=1) / 10, A.var(ddof=1) / 10
    assert r.t == pytest.approx((B.mean() - A.mean()) / math.sqrt(vb + va), rel=1e-12)
    assert r.df == pytest.approx((vb + va) ** 2 / (vb**2 / 9 + va**2 / 9), rel=1e-12)
    # scipy.stats.ttest_ind(B, A, equal_var=False) and its confidence_interval().
    assert r.t == pytest.approx(2.0740146266783652, rel=1e-10)
    assert r.df == pytest.approx(10.209185368660295, rel=1e-10)
    assert r.p_value == pytest.approx(0.06427999772458465, rel=1e-8)
    assert r.ci[0] == pytest.approx(-0.2239941490152435, rel=1e-7)
    assert r.ci[1] == pytest.approx(6.503994149015245, rel=1e-7)


def test_welch_degenerate_and_undefined_cases():
    same = welch_test(1.0, 0.0, 5, 1.0, 0.0, 5)
    assert same.p_value == 1.0 and same.df == 8.0
    apart = welch_test(1.0, 0.0, 5, 0.0, 0.0, 5)
    assert apart.p_value == 0.0
    tiny = welch_test(1.0, 0.5, 1, 0.0, 0.5, 10)
    assert math.isnan(tiny.p_value) and math.isnan(tiny.ci[0])


def test_mean_ci_known_answer():
    lo, hi = mean_ci(10.0, 4.0, 16)  # 10 -+ t_{0.975,15} * 2 / 4
    assert (lo, hi) == pytest.approx(
        (10 - 2.131449545559323 * 0.5, 10 + 2.131449545559323 * 0.5), abs=1e-9
    )
    lo, hi = mean_ci(1.0, 2.0, 2)  # df = 1 is Cauchy: t_{0.975,1} = tan(0.475 pi)
    t1 = math.tan(0.475 * math.pi)
    assert (lo, hi) == pytest.approx((1 - t1, 1 + t1), rel=1e-12)
    lo, hi = mean_ci(0.0, 1.0, 10**8)  # t -> normal
    assert hi == pytest.approx(1.959963984540054e-4, rel=1e-6)
    assert all(math.isnan(x) for x in mean_ci(3.0, math.nan, 1))


def test_lift_ci_known_answer():
    lift, lo, hi = lift_ci(0.12, 0.12 * 0.88, 10_000, 0.10, 0.09, 10_000)
    # Var = (s_t^2/n_t)/m_c^2 + m_t^2 (s_c^2/n_c)/m_c^4 = 0.001056 + 0.001296
    half = 1.959963984540054 * math.sqrt(0.001056 + 0.001296)
    assert lift == pytest.approx(0.2, rel=1e-12)
    assert (lo, hi) == pytest.approx((0.2 - half, 0.2 + half), rel=1e-9)
    assert all(math.isnan(x) for x in lift_ci(0.1, 0.09, 100, 0.0, 0.0, 100))


# --------------------------------------------------------------------------- sequential


def test_msprt_known_answer_and_inversion():
    r = msprt(0.12, 0.1056, 10_000, 0.10, 0.09, 10_000)
    v = 0.1056 / 10_000 + 0.09 / 10_000
    c = 2 * math.log(20) + math.log(1 + 2 * math.log(20))
    tau2 = c * v * 20_000 / 10_000
    log_lr = 0.5 * math.log(v / (v + tau2)) + tau2 * 0.02**2 / (2 * v * (v + tau2))
    assert r.tau2 == pytest.approx(tau2, rel=1e-12)
    assert r.log_lr == pytest.approx(log_lr, rel=1e-10)
    assert r.p_value == pytest.approx(math.exp(-log_lr), rel=1e-10)
    # Waudby-Smith et al.'s asymptotic CS with rho^2 = c / t*, written in their form.
    sigma2, t = v * 20_000, 20_000  # per-observation variance of the difference, "time"
    rho2 = c / 10_000
    radius = math.sqrt(
        sigma2 * 2 * (t * rho2 + 1) / (t**2 * rho2) * math.log(math.sqrt(t * rho2 + 1) / 0.05)
    )
    assert r.ci == pytest.approx((0.02 - radius, 0.02 + radius), rel=1e-9)
    # The sequence is the inversion of the test: at its bounds the p-value equals alpha.
    for bound in r.ci:
        at = msprt(0.12, 0.1056, 10_000, 0.10, 0.09, 10_000, theta0=bound, tau=math.sqrt(tau2))
        assert at.p_value == pytest.approx(0.05, rel=1e-9)


def test_msprt_is_wider_than_fixed_ci_and_waits_for_min_n():
    seq = msprt(0.11, 0.098, 5_000, 0.10, 0.09, 5_000)
    fixed = welch_test(0.11, 0.098, 5_000, 0.10, 0.09, 5_000)
    assert seq.ci[0] < fixed.ci[0] and seq.ci[1] > fixed.ci[1]
    early = msprt(0.5, 0.25, 99, 0.0, 0.01, 500)
    assert early.p_value == 1.0 and early.ci == (-math.inf, math.inf)
    assert msprt(0.5, 0.25, 99, 0.0, 0.01, 500, min_n=50).p_value < 1e-6


# --------------------------------------------------------------------------- SRM


def test_srm_known_answers():
    r = srm_check({"a": 5000, "b": 5200}, {"a": 1, "b": 1})
    assert r["statistic"] == pytest.approx(2 * 100**2 / 5100, rel=1e-12)
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(r["statistic"] / 2)), rel=1e-10)
    assert not r["mismatch"]
    flagged = srm_check({"a": 5000, "b": 5400}, {"a": 1, "b": 1})
    assert flagged["p_value"] == pytest.approx(
        math.erfc(math.sqrt(2 * 200**2 / 5200 / 2)), rel=1e-10
    )
    assert flagged["p_value"] < 1e-3 and flagged["mismatch"]
    # Three arms, 20/30/50 split: X^2 = 100^2/2000 + 0 + 100^2/5000 = 7, df 2 -> exp(-3.5).
    three = srm_check({"a": 2100, "b": 3000, "c": 4900}, {"a": 2, "b": 3, "c": 5})
    assert three["statistic"] == pytest.approx(7.0) and three["df"] == 2
    assert three["p_value"] == pytest.approx(math.exp(-3.5), rel=1e-10)
    assert srm_check({"a": 0, "b": 0}, {"a": 1, "b": 1})["p_value"] == 1.0


# --------------------------------------------------------------------------- assignment


def test_assignment_is_sticky_and_pinned():
    split = {"control": 0.5, "treatment": 0.5}
    first = [assign_variant(f"user-{i}", split, "exp-1") for i in range(1000)]
    again = [assign_variant(f"user-{i}", dict(split), "exp-1") for i in range(1000)]
    assert first == again
    # Pinned values: a change of hash (and so of everyone's variant) must be deliberate.
    assert hash_unit("user-1", "exp-1") == 0.7675713010507157
    assert hash_unit("", "") == 0.9618044850102755


def test_assignment_is_identical_in_another_process():
    code = (
        "from engine.abtest import assign_variant;"
        "print(','.join(assign_variant(f'u{i}', {'a': 1, 'b': 2, 'c': 1}, 's') for i in range(200)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=str(Path(__file__).resolve().parents[1]),
    ).stdout.strip()
    here = ",".join(assign_variant(f"u{i}", {"a": 1, "b": 2, "c": 1}, "s") for i in range(200))
    assert out == here


def test_assignment_follows_the_split_over_100k_ids():
    split = {"a": 1.0, "b": 1.0, "c": 2.0}
    counts = Counter(assign_variant(f"user-{i}", split, "exp-7") for i in range(100_000))
    # Margin: 0.01 absolute share = 1,000 users, about 7 standard deviations of a 25% share.
    for name, share in validate_weights(split).items():
        assert abs(counts[name] / 100_000 - share) < 0.01, counts
    assert not srm_check(dict(counts), split)["mismatch"]


def test_salt_reshuffles_and_weight_change_moves_only_a_band():
    ids = [f"user-{i}" for i in range(20_000)]
    split = {"a": 1, "b": 1}
    one = [assign_variant(u, split, "exp-1") for u in ids]
    two = [assign_variant(u, split, "exp-2") for u in ids]
    agree = np.mean([x == y for x, y in zip(one, two, strict=True)])
    assert abs(agree - 0.5) < 0.02  # independent experiments
    shifted = [assign_variant(u, {"a": 2, "b": 3}, "exp-1") for u in ids]
    # Shrinking a from 50% to 40% only moves users from a to b.
    assert all(not (old == "b" and new == "a") for old, new in zip(one, shifted, strict=True))


# --------------------------------------------------------------------------- accumulator


def test_accumulator_merge_equals_one_pass():
    rng = np.random.default_rng(5)
    x = rng.normal(1e6, 3.0, 10_000)  # large offset: a naive sum-of-squares would lose digits
    parts = np.split(x, [1, 17, 3000, 3001, 9000])
    accs = [VariantStats().update(p) for p in parts]
    merged = VariantStats()
    for acc in accs:
        merged.merge(acc)
    streamed = VariantStats()
    for value in x[:500]:
        streamed.update(float(value))
    streamed.update(x[500:])
    for acc in (merged, streamed):
        assert acc.n == x.size
        assert acc.mean == pytest.approx(x.mean(), rel=1e-13)
        assert acc.var == pytest.approx(x.var(ddof=1), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
    st.integers(0, 60),
)
def test_accumulator_merge_property(values, cut):
    cut = min(cut, len(values))
    merged = VariantStats().update(values[:cut]).merge(VariantStats().update(values[cut:]))
    arr = np.asarray(values)
    assert merged.n == arr.size
    assert merged.mean == pytest.approx(arr.mean(), rel=1e-9, abs=1e-6)
    assert merged.var == pytest.approx(arr.var(ddof=1), rel=1e-7, abs=1e-3)


def test_accumulator_state_round_trips():
    acc = VariantStats().update([0.0, 1.0, 1.0, 0.5])
    restored = VariantStats.from_dict(json.loads(json.dumps(acc.to_dict())))
    assert restored == acc and restored is not acc
    assert pickle.loads(pickle.dumps(acc)) == acc
    assert acc.copy() == acc
    empty = VariantStats()
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.var)
    assert VariantStats().update([]) == empty
    one = VariantStats().update(2.0)
    assert one.mean == 2.0 and math.isnan(one.var)


# --------------------------------------------------------------------------- report


def _stats(seed: int = 0, pc: float = 0.10, pt: float = 0.12, n: int = 20_000):
    rng = np.random.default_rng(seed)
    return {
        "control": VariantStats().update(rng.binomial(1, pc, n)),
        "treatment": VariantStats().update(rng.binomial(1, pt, n)),
    }


def test_report_contents_match_the_building_blocks():
    stats = _stats()
    report = ab_report(stats, {"control": 1, "treatment": 1}, "control")
    json.dumps(report, allow_nan=False)
    c, t = stats["control"], stats["treatment"]
    cmp = report["comparisons"]["treatment"]
    welch = welch_test(t.mean, t.var, t.n, c.mean, c.var, c.n)
    seq = msprt(t.mean, t.var, t.n, c.mean, c.var, c.n)
    assert cmp["diff"] == pytest.approx(t.mean - c.mean)
    assert cmp["welch"]["p_value"] == welch.p_value
    assert cmp["sequential"]["p_value"] == seq.p_value
    assert cmp["sequential"]["confidence_sequence"] == list(seq.ci)
    assert cmp["lift"] == pytest.approx(t.mean / c.mean - 1)
    assert report["variants"]["control"]["ci"] == list(mean_ci(c.mean, c.var, c.n))
    assert cmp["decision"] == "significant" and cmp["fixed_horizon_significant"]
    assert report["warnings"] == []
    text = format_report(report)
    assert "treatment" in text and "significant" in text and "SRM" in text


def test_report_carries_the_running_sequential_state():
    weights = {"control": 1, "treatment": 1}
    rng = np.random.default_rng(3)
    xc, xt = rng.binomial(1, 0.10, 12_000), rng.binomial(1, 0.11, 12_000)
    previous = None
    for n in (2_000, 4_000, 8_000, 12_000):  # peeks at growing cumulative data
        stats = {
            "control": VariantStats().update(xc[:n]),
            "treatment": VariantStats().update(xt[:n]),
        }
        now = ab_report(stats, weights, "control")["comparisons"]["treatment"]["sequential"]
        report = ab_report(stats, weights, "control", previous=previous)
        seq = report["comparisons"]["treatment"]["sequential"]
        if previous is None:
            assert seq == now
        else:
            before = previous["comparisons"]["treatment"]["sequential"]
            assert seq["p_value"] == min(now["p_value"], before["p_value"])
            lo, hi = seq["confidence_sequence"]
            assert lo == max(now["confidence_sequence"][0], before["confidence_sequence"][0])
            assert hi == min(now["confidence_sequence"][1], before["confidence_sequence"][1])
        previous = report
    assert previous["warnings"] == []


def test_report_warns_when_the_running_sequence_would_be_empty():
    weights = {"control": 1, "treatment": 1}
    early = ab_report(_stats(n=20_000), weights, "control")
    later = ab_report(_stats(seed=1, pt=0.10, n=20_000), weights, "control", previous=early)
    e, l_ = early["comparisons"]["treatment"], later["comparisons"]["treatment"]
    assert l_["sequential"]["p_value"] == e["sequential"]["p_value"]  # running minimum
    assert l_["decision"] == "significant"
    assert any("became empty" in w for w in later["warnings"])
    own = ab_report(_stats(seed=1, pt=0.10, n=20_000), weights, "control")
    assert (
        l_["sequential"]["confidence_sequence"]
        == own["comparisons"]["treatment"]["sequential"]["confidence_sequence"]
    )


def test_report_with_no_data_is_valid_json_and_warns_on_srm():
    report = ab_report({"a": VariantStats()}, {"a": 1, "b": 1}, "a")
    json.dumps(report, allow_nan=False)
    cmp = report["comparisons"]["b"]
    assert cmp["diff"] is None and cmp["sequential"]["confidence_sequence"] == [None, None]
    assert cmp["decision"] == "not significant"
    skewed = {
        "a": VariantStats().update(np.zeros(5000)),
        "b": VariantStats().update(np.zeros(5400)),
    }
    report = ab_report(skewed, {"a": 1, "b": 1}, "a")
    assert report["srm"]["mismatch"] and any(
        "sample ratio mismatch" in w for w in report["warnings"]
    )
    # Unit counts given explicitly take precedence over outcome counts.
    report = ab_report(skewed, {"a": 1, "b": 1}, "a", counts={"a": 1000, "b": 1001})
    assert not report["srm"]["mismatch"]


# --------------------------------------------------------------------------- bad input

GOOD = {"control": VariantStats().update([0, 1, 1]), "treatment": VariantStats().update([1, 1, 0])}
SPLIT = {"control": 1.0, "treatment": 1.0}

BAD_CALLS = [
    # (call, exception, message fragment that names the parameter and the value)
    (
        lambda: ab_report(GOOD, {"control": 1, "treatment": -1}, "control"),
        ValueError,
        r"weights\['treatment'\]: must be a finite number > 0 \(got -1\)",
    ),
    (
        lambda: ab_report(GOOD, {"control": 1, "treatment": math.nan}, "control"),
        ValueError,
        r"weights\['treatment'\].*nan",
    ),
    (
        lambda: ab_report(GOOD, {"control": 1, "treatment": math.inf}, "control"),
        ValueError,
        r"weights\['treatment'\].*inf",
    ),
    (
        lambda: ab_report(GOOD, {"control": 1, "treatment": True}, "control"),
        TypeError,
        r"weights\['treatment'\]: must be a real number",
    ),
    (
        lambda: ab_report(GOOD, {"control": 1, "treatment": "1"}, "control"),
        TypeError,
        r"weights\['treatment'\]",
    ),
    (
        lambda: ab_report(GOOD, {}, "control"),
        ValueError,
        r"weights: must name at least one variant",
    ),
    (
        lambda: ab_report(GOOD, [("control", 1)], "control"),
        TypeError,
        r"weights: must be a mapping",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "ctrl"),
        ValueError,
        r"control: must be one of the variants \['control', 'treatment'\] \(got 'ctrl'\)",
    ),
    (lambda: ab_report(GOOD, SPLIT, ""), ValueError, r"control: must be a non-empty string"),
    (lambda: ab_report({}, SPLIT, "control"), ValueError, r"stats: must hold at least one variant"),
    (lambda: ab_report(None, SPLIT, "control"), TypeError, r"stats: must be a mapping"),
    (
        lambda: ab_report({"other": VariantStats()}, SPLIT, "control"),
        ValueError,
        r"stats: names variant 'other'",
    ),
    (
        lambda: ab_report({"control": [1, 2]}, SPLIT, "control"),
        TypeError,
        r"stats\['control'\]: must be a VariantStats",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", alpha=0.0),
        ValueError,
        r"alpha: must lie in \(0, 1\) \(got 0.0\)",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", alpha=1.5),
        ValueError,
        r"alpha: must lie in \(0, 1\)",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", previous={"x": 1}),
        TypeError,
        r"previous: must be a report",
    ),
    (
        lambda: ab_report(
            GOOD, SPLIT, "control", alpha=0.01, previous=ab_report(GOOD, SPLIT, "control")
        ),
        ValueError,
        r"previous: must come from a report with the same control",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", min_n=1),
        ValueError,
        r"min_n: must be an integer >= 2 \(got 1\)",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", tau=-0.1),
        ValueError,
        r"tau: must be a finite number > 0 \(got -0.1\)",
    ),
    (
        lambda: ab_report(GOOD, SPLIT, "control", srm_threshold=2),
        ValueError,
        r"threshold: must lie in \(0, 1\)",
    ),
    (lambda: assign_variant("", SPLIT, "s"), ValueError, r"user_id: must be a non-empty string"),
    (lambda: assign_variant(42, SPLIT, "s"), TypeError, r"user_id: must be a string \(got 42\)"),
    (lambda: assign_variant("u", SPLIT, None), TypeError, r"salt: must be a string \(got None\)"),
    (
        lambda: assign_variant("u", {"": 1}, "s"),
        ValueError,
        r"variants key: must be a non-empty string",
    ),
    (
        lambda: assign_variant("u", {"a": 0}, "s"),
        ValueError,
        r"variants\['a'\]: must be a finite number > 0 \(got 0\)",
    ),
    (lambda: VariantStats().update([1.0, math.nan]), ValueError, r"values: must all be finite"),
    (
        lambda: VariantStats().update(math.inf),
        ValueError,
        r"values: must all be finite \(got inf\)",
    ),
    (lambda: VariantStats().update("abc"), TypeError, r"values: must be a number or a sequence"),
    (lambda: VariantStats().update(True), TypeError, r"values: must be numeric, not a bool"),
    (
        lambda: VariantStats().update([[1.0, 2.0]]),
        ValueError,
        r"values: must be a scalar or one-dimensional \(got 'shape \(1, 2\)'\)",
    ),
    (lambda: VariantStats().merge({"n": 1}), TypeError, r"other: must be a VariantStats"),
    (
        lambda: VariantStats.from_dict({"n": 1, "mean": 0.0}),
        ValueError,
        r"state: is missing keys \['m2'\]",
    ),
    (
        lambda: VariantStats.from_dict({"n": -1, "mean": 0.0, "m2": 0.0}),
        ValueError,
        r"state\['n'\]: must be an integer >= 0 \(got -1\)",
    ),
    (
        lambda: VariantStats.from_dict({"n": 2, "mean": 0.0, "m2": -1.0}),
        ValueError,
        r"m2 finite and >= 0",
    ),
    (lambda: srm_check({"a": 10}, SPLIT), ValueError, r"counts: must name exactly the variants"),
    (
        lambda: srm_check({"control": -1, "treatment": 3}, SPLIT),
        ValueError,
        r"counts\['control'\]: must be an integer >= 0 \(got -1\)",
    ),
    (
        lambda: format_report({"variants": {}}),
        TypeError,
        r"report: must be a dict returned by ab_report",
    ),
]


@pytest.mark.parametrize(("call", "exc", "message"), BAD_CALLS)
def test_bad_input_raises_a_clear_error(call, exc, message):
    with pytest.raises(exc, match=message) as err:
        call()
    assert isinstance(err.value, ValidationError)  # the one hierarchy every package shares
