"""Online A/B inside the engine: sticky assignment, per-variant logging, the report."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Engine, ValidationError
from engine.abtest import assign_variant

SPLIT = {"control": {"policy": "uniform", "weight": 1.0},
         "treatment": {"policy": "uniform", "weight": 1.0}}


def test_assignment_is_sticky_and_matches_abtest():
    with Engine(None, variants=SPLIT, salt="exp-7", clock=lambda: 0.0) as eng:
        for i in range(500):
            uid = f"user-{i}"
            v = eng.variant_of(uid)
            assert v == eng.variant_of(uid)
            assert v == assign_variant(uid, {"control": 1.0, "treatment": 1.0}, salt="exp-7")
        d = eng.rank("user-3", ["a", "b"])
        assert d.variant == eng.variant_of("user-3")
        assert eng.store.decision(d.decision_id)["variant"] == d.variant


def test_planted_lift_is_detected_and_covered():
    rng = np.random.default_rng(11)
    base, lift = 0.10, 0.25  # treatment converts at 0.125: a relative lift of 25%
    with Engine(None, variants=SPLIT, salt="exp-lift", clock=lambda: 0.0,
                wait_window=1e9) as eng:
        reqs = [{"user_id": f"u{i}", "candidates": ["a", "b", "c"]} for i in range(20_000)]
        for start in range(0, len(reqs), 2000):
            for d in eng.rank_batch(reqs[start:start + 2000]):
                p = base * (1 + lift) if d.variant == "treatment" else base
                eng.reward(d.decision_id, float(rng.random() < p))
            report = eng.ab_report()  # peeking after every batch is allowed
        cmp = report["comparisons"]["treatment"]
        assert cmp["decision"] == "significant"
        assert cmp["lift_ci"][0] <= lift <= cmp["lift_ci"][1]
        assert report["srm"]["mismatch"] is False
        assert report["variants"]["control"]["n"] + report["variants"]["treatment"]["n"] == 20_000


def test_bad_variants_are_named():
    with pytest.raises(ValidationError, match=r"^variants\.b\.weight"):
        Engine(None, variants={"a": {"policy": "uniform"}, "b": {"policy": "uniform", "weight": -1}})
    with pytest.raises(ValidationError, match=r"^variants\.a\.polcy"):
        Engine(None, variants={"a": {"polcy": "uniform"}})
    with Engine(None, variants=SPLIT) as eng, pytest.raises(ValidationError, match="^control"):
        eng.ab_report(control="nobody")
