"""Differentially private releases (engine.privacy): intervals that hold at their stated rate,
a neighbouring-datasets test of the privacy loss, the budget, the CLI and bad input.

OpenDP draws its noise from the operating system's CSPRNG (it cannot be seeded, on
purpose); the data are seeded, and every statistical bound below is at least four standard
errors wide, so a correct implementation fails them with probability below 1e-4 each.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from engine import Engine
from engine.errors import ValidationError
from engine.events import DEFAULT_WEIGHTS, EventTypes
from engine.privacy import dp
from engine.privacy.aggregates import Bounds, event_data, release, reward_rows, topic_rows
from engine.privacy.budget import Budget, BudgetExceeded
from engine.store import Store
from experiments.cli import main as cli

TOPICS = ["jazz", "rock", "pop", "folk"]
BOUNDS = Bounds(events_per_user=5, rewards_per_user=3, topics_per_user=2, interest_cap=4.0)
REPS = 2000


def _scenario(data_dir, users: int = 120, seed: int = 7) -> None:
    """A seeded two-variant engine run: events on topics, decisions and rewards; user
    ``heavy`` has far more events and rewards than the bounds let count."""
    rng = np.random.default_rng(seed)
    eng = Engine(str(data_dir), policy="uniform", item_features=2, seed=seed,
                 clock=lambda: 10_000.0, variants={"a": {"policy": "uniform"},
                                                    "b": {"policy": "uniform"}})
    types = ["view", "click", "purchase", "search"]
    evs = [{"user_id": f"u{u}", "type": str(rng.choice(types)), "ts": 9000.0 + k,
            "item_id": f"i{k}", "topics": list(rng.choice(TOPICS, size=2, replace=False)),
            "text": "late night jazz"}
           for u in range(users) for k in range(int(rng.integers(1, 12)))]
    evs += [{"user_id": "heavy", "type": "click", "ts": 9000.0 + k, "item_id": "h",
             "topics": ["jazz"]} for k in range(100)]
    eng.ingest(evs)
    cands = [{"id": "x", "features": [1.0, 0.0]}, {"id": "y", "features": [0.0, 1.0]}]
    for u in [*(f"u{u}" for u in range(users)), *["heavy"] * 30]:
        for _ in range(int(rng.integers(1, 5))):
            d = eng.rank(u, cands)
            eng.reward(d.decision_id, float(rng.random() < (0.3 if d.chosen == "x" else 0.6)))
    eng.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dp")
    _scenario(path)
    return path


@pytest.fixture(scope="module")
def rows(data_dir):
    """The bounded rows a release reads: event types, (variant, reward), (topic, interest)."""
    store = Store(data_dir, create=False)
    try:
        kinds, interest = event_data(store, BOUNDS, EventTypes(), 1)
        return kinds, reward_rows(store, BOUNDS), topic_rows(interest, TOPICS, BOUNDS)
    finally:
        store.close()


def _exact_sums(rows, keys, bounds):
    lo, hi = bounds
    return {k: sum(min(hi, max(lo, v)) for kk, v in rows if kk == k) for k in keys}


def test_bounds_limit_each_users_rows(rows):
    kinds, rewards, topics = rows
    # 121 users with at most 5 counted events each: heavy's 100 clicks count 5 times
    assert len(kinds) <= 121 * 5
    assert len(rewards) <= 121 * 3 and len(topics) <= 121 * 2
    assert {k for k, _ in topics} <= set(TOPICS) and all(v > 0 for _, v in topics)


def _coverage(release_once, exact: dict) -> dict[str, float]:
    hits = Counter()
    for _ in range(REPS):
        for key, fig in release_once().items():
            hits[key] += fig.ci[0] <= exact[key] <= fig.ci[1]
    return {k: hits[k] / REPS for k in exact}


def test_count_intervals_hold_at_the_stated_rate(rows):
    kinds = rows[0]
    keys = sorted(DEFAULT_WEIGHTS)
    exact = {k: kinds.count(k) for k in keys}
    exact["(other)"] = 0
    rates = _coverage(lambda: dp.noisy_counts(kinds, keys, 5, 0.05), exact)
    # scale 100: discrete Laplace intervals are near-exact; 5 sigma of 2000 draws is 0.025
    assert all(0.925 <= r <= 0.975 for r in rates.values()), rates


def test_sum_intervals_hold_at_the_stated_rate(rows):
    rewards = rows[1]
    exact = _exact_sums(rewards, ["a", "b"], (0.0, 1.0))
    rates = _coverage(lambda: dp.noisy_sums(rewards, ["a", "b"], (0.0, 1.0), 3, 0.2), exact)
    assert all(0.925 <= r <= 0.975 for r in rates.values()), rates


def test_mean_intervals_hold_at_least_the_stated_rate(rows):
    topics = rows[2]
    exact_n = Counter(k for k, _ in topics)
    exact_s = _exact_sums(topics, TOPICS, (0.0, 4.0))
    exact = {k: exact_s[k] / exact_n[k] for k in TOPICS}

    def once():
        counts = dp.noisy_counts((k for k, _ in topics), TOPICS, 2, 0.5)
        sums = dp.noisy_sums(topics, TOPICS, (0.0, 4.0), 2, 0.5)
        return {k: dp.mean_of(sums[k], counts[k], (0.0, 4.0)) for k in TOPICS}

    rates = _coverage(once, exact)
    # the union bound makes these intervals conservative: at least 95%, minus 5 sigma
    assert all(r >= 0.925 for r in rates.values()), rates
    assert any(r < 1.0 for r in rates.values()), "intervals are not informative at all"


def _log_ratio_bound(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |log(P_a(bin) / P_b(bin))| over 10 bins at the pooled sample's deciles
    (an empirical privacy loss). Every bin holds 10% of the pooled draws; a draw is added to
    each count so that a bin that one sample never reaches gives a large, finite loss."""
    edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 11)))
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    return float(np.max(np.abs(np.log((ha + 1) / len(a)) - np.log((hb + 1) / len(b)))))


N_NEIGHBOUR = 10_000
#: Tolerance on the empirical log ratio. A bin holds 2,000 of the 20,000 pooled draws, split
#: about e:1 where the ratio is at its bound (the tails beyond both means hold ~3 bins on
#: each side), so one bin's log ratio has a standard error of about
#: sqrt(1/540 + 1/1460) = 0.05: exceeding the bound by 0.25 is 5 standard errors.
LOSS_TOLERANCE = 0.25
KEYS = sorted(DEFAULT_WEIGHTS)
#: A neighbour pair for the counts: ``heavy``'s first 5 (counted) events are clicks.
WITH_HEAVY = ["click"] * 40 + ["view"] * 30 + ["purchase"] * 5
WITHOUT_HEAVY = ["click"] * 35 + ["view"] * 30 + ["purchase"] * 5


def _draws(f, n=N_NEIGHBOUR) -> np.ndarray:
    return np.array([f() for _ in range(n)])


def test_neighbouring_datasets_are_indistinguishable_within_epsilon(rows):
    """With and without one user contributing the most a user can (5 events; 3 rewards of
    1.0), the click count's and variant a's reward sum's output distributions differ by at
    most exp(epsilon), up to LOSS_TOLERANCE, and come close to it (the bound is tight)."""
    eps = 1.0
    loss = _log_ratio_bound(
        _draws(lambda: dp.noisy_counts(WITH_HEAVY, KEYS, 5, eps)["click"].value),
        _draws(lambda: dp.noisy_counts(WITHOUT_HEAVY, KEYS, 5, eps)["click"].value))
    assert eps - 0.3 < loss <= eps + LOSS_TOLERANCE, loss
    base = [(k, v) for k, v in rows[1] if k == "a"][3:]
    more = base + [("a", 1.0)] * 3
    loss = _log_ratio_bound(
        _draws(lambda: dp.noisy_sums(more, ["a"], (0.0, 1.0), 3, eps)["a"].value),
        _draws(lambda: dp.noisy_sums(base, ["a"], (0.0, 1.0), 3, eps)["a"].value))
    assert eps - 0.3 < loss <= eps + LOSS_TOLERANCE, loss


def test_unbounded_contribution_would_fail_the_neighbour_test():
    """The same check catches a user counted 40 times at the scale set for 5 (a release
    that forgot the contribution bound): the test above can fail."""
    heavy_all = WITHOUT_HEAVY + ["click"] * 40
    loss = _log_ratio_bound(
        _draws(lambda: dp.noisy_counts(heavy_all, KEYS, 5, 1.0)["click"].value, 3000),
        _draws(lambda: dp.noisy_counts(WITHOUT_HEAVY, KEYS, 5, 1.0)["click"].value, 3000))
    assert loss > 1.0 + LOSS_TOLERANCE


def test_release_reports_figures_within_the_budget(data_dir, tmp_path):
    store = Store(data_dir, create=False)
    try:
        budget = Budget(store, total=100.0)
        before = budget.spent()
        report = release(store, 2.5, budget, topics=TOPICS, bounds=BOUNDS)
        assert budget.spent() == pytest.approx(before + 2.5)
        assert budget.ledger()[-1]["epsilon"] == 2.5
    finally:
        store.close()
    assert set(report["variants"]) == {"a", "b"} and set(report["topics"]) == set(TOPICS)
    for section in ("event_types", "variants", "topics"):
        for figures in report[section].values():
            for f in figures.values():
                assert f["ci"][0] <= f["value"] <= f["ci"][1] and f["scale"] > 0
    # five measurements share 2.5: each costs 0.5 and a mean costs its sum and count
    assert report["event_types"]["click"]["count"]["epsilon"] == pytest.approx(0.5)
    assert report["variants"]["a"]["mean"]["epsilon"] == pytest.approx(1.0)
    assert report["experiment"]["control"] == "a" and "b" in report["experiment"]["treatments"]


def test_budget_refuses_the_release_that_would_exceed_it(tmp_path):
    _scenario(tmp_path / "d", users=5)
    store = Store(tmp_path / "d", create=False)
    try:
        budget = Budget(store, total=1.0)
        release(store, 0.6, budget)
        with pytest.raises(BudgetExceeded, match="needs epsilon 0.5 but 0.4"):
            release(store, 0.5, budget)
        assert budget.spent() == pytest.approx(0.6)  # the refused release spent nothing
        release(store, 0.4, budget)  # exactly what is left fits
        assert budget.left() == pytest.approx(0.0)
    finally:
        store.close()
    store = Store(tmp_path / "d", create=False)  # the ledger survives a restart
    try:
        budget = Budget(store)
        assert budget.total == 1.0 and [r["epsilon"] for r in budget.ledger()] == [0, 0.6, 0.4]
        with pytest.raises(BudgetExceeded):
            release(store, 0.01, budget)
    finally:
        store.close()


def test_cli_report_spends_and_refuses(tmp_path, capsys):
    _scenario(tmp_path / "d", users=5)
    d = str(tmp_path / "d")
    assert cli(["report", "--data-dir", d, "--dp-epsilon", "1.5", "--dp-budget", "2",
                "--topics", "jazz,rock", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["budget"] == {"total": 2.0, "spent": 1.5, "left": 0.5}
    assert set(report["topics"]) == {"jazz", "rock"}
    assert cli(["report", "--data-dir", d, "--dp-epsilon", "1"]) == 2
    assert "needs epsilon 1.0 but 0.5 of 2.0 is left" in capsys.readouterr().err
    assert cli(["report", "--data-dir", d, "--dp-epsilon", "0.5"]) == 0
    assert "event types:" in capsys.readouterr().out
    assert cli(["report", "--data-dir", d, "--ledger", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["epsilon"] for r in listed["ledger"]] == [0, 1.5, 0.5]
    assert listed["budget"]["left"] == 0.0 and "topics jazz,rock" in listed["ledger"][1]["what"]
    assert cli(["report", "--data-dir", d]) == 2
    assert "--dp-epsilon: is required" in capsys.readouterr().err


@pytest.mark.parametrize("call, field", [
    (lambda s, b: release(s, 0.0, b), "epsilon"),
    (lambda s, b: release(s, math.inf, b), "epsilon"),
    (lambda s, b: release(s, "1", b), "epsilon"),
    (lambda s, b: release(s, 0.1, b, alpha=1.0), "alpha"),
    (lambda s, b: release(s, 0.1, b, control="c"), "control"),
    (lambda s, b: Budget(s, total=-1), "dp_total_epsilon"),
    (lambda s, b: Bounds(reward_bounds=(1.0, 0.0)), "reward_bounds"),
    (lambda s, b: Bounds(interest_cap=0), "interest_cap"),
])
def test_bad_input_names_the_field(tmp_path, call, field):
    store = Store(tmp_path)
    try:
        budget = Budget(store)
        with pytest.raises(ValidationError) as err:
            call(store, budget)
        assert err.value.field == field
        assert budget.spent() == 0.0  # nothing was charged
    finally:
        store.close()


def test_engine_release_uses_its_configured_budget(tmp_path):
    eng = Engine(str(tmp_path / "d"), policy="uniform", item_features=2, dp_total_epsilon=1.0,
                 clock=lambda: 100.0, event_types={"share": 1.5})
    eng.ingest([{"user_id": "u1", "type": "share", "ts": 90.0, "topics": ["jazz"]}])
    report = eng.dp_release(0.75, topics=["jazz"])
    assert "share" in report["event_types"] and report["budget"]["left"] == pytest.approx(0.25)
    with pytest.raises(BudgetExceeded):
        eng.dp_release(0.5)
    eng.close()
