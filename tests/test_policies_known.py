"""Known answers: exact probabilities, ridge algebra, win probabilities, learning margins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies import available, make
from policies.thompson import win_probabilities

D, K = 4, 6
LINEAR = ["egreedy", "linucb", "lints", "squarecb"]


# ---- exact probabilities ------------------------------------------------------------
def one_record_model(name, **params):
    """theta = (0.5, 0) after one record x = (1, 0), r = 1 with l2 = 1; A^-1 = diag(0.5, 1)
    (a stationary model: with forgetting the numbers move by about 1e-4)."""
    p = make(name, n_features=2, seed=0, half_life=None, **params)
    return p.update(np.array([[1.0, 0.0]]), np.array([1.0]), np.array([0.5]))


PHI = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]]])  # predictions 0.5, 0, 0.25


def test_epsilon_greedy_probabilities_are_exact():
    p = one_record_model("egreedy", epsilon=0.3)
    np.testing.assert_allclose(p.act(PHI), [[0.8, 0.1, 0.1]])
    # masked candidates share nothing; ties for the best split its share
    np.testing.assert_allclose(p.act(PHI, np.array([[False, True, True]])), [[0, 0.15, 0.85]])
    np.testing.assert_allclose(p.act(np.array([[[1.0, 0], [1.0, 0]]])), [[0.5, 0.5]])


def test_squarecb_inverse_gap_weights_are_exact():
    p = one_record_model("squarecb", gamma_scale=4.0, gamma_exponent=0.5)  # gamma = 4 * 1^0.5
    others = [1 / (3 + 4 * 0.5), 1 / (3 + 4 * 0.25)]
    np.testing.assert_allclose(p.act(PHI), [[1 - sum(others), *others]])
    p.update(np.zeros((3, 2)), np.zeros(3), np.ones(3))  # t = 4: gamma = 8
    np.testing.assert_allclose(p.act(PHI)[0, 1], 1 / (3 + 8 * 0.5))


def test_linucb_picks_the_highest_bound_with_its_floor():
    p = one_record_model("linucb", alpha=1.0, epsilon=0.06)
    # bounds: 0.5 + sqrt(0.5) = 1.207, 0 + 1 = 1.0, 0.25 + 0.5 sqrt(0.5) = 0.604
    np.testing.assert_allclose(p.act(PHI), [[0.96, 0.02, 0.02]])
    p = one_record_model("linucb", alpha=2.0, epsilon=0.06)  # 1.914 < 2.0: the unexplored one
    np.testing.assert_allclose(p.act(PHI), [[0.02, 0.96, 0.02]])


def test_lints_reports_the_exact_win_probability_of_its_posterior():
    p = one_record_model("lints", v=1.0, n_draws=20_000, epsilon=0.1)
    two = PHI[:, :2]  # scores N(0.5, 0.5) and N(0, 1), independent
    exact = 0.5 * (1 + math.erf(0.5 / math.sqrt(1.5) / math.sqrt(2)))
    probs = p.act(two)
    np.testing.assert_allclose(probs[0, 0], 0.9 * exact + 0.05, atol=0.01)


@pytest.mark.parametrize("b", [1, 4])  # one decision: joint score draws; a batch: weights
def test_win_probabilities_both_paths_match_the_exact_answer(b):
    d = 6
    rng = np.random.default_rng(0)
    phi = np.zeros((b, 2, d))
    phi[:, 0, 0], phi[:, 1, 1] = 1.0, 2.0
    cov = np.diag(np.linspace(0.5, 1.0, d))  # A^-1, with b = A theta
    theta = np.zeros(d)
    theta[0] = 1.0
    got = win_probabilities(phi, None, cov, np.linalg.solve(cov, theta), theta,
                            lambda: np.sqrt(cov), 1.0, 40_000, 0.0, rng)
    # s0 ~ N(1, 0.5), s1 ~ N(0, 4 * 0.6): P(s0 > s1)
    exact = 0.5 * (1 + math.erf(1.0 / math.sqrt(0.5 + 4 * 0.6) / math.sqrt(2)))
    np.testing.assert_allclose(got[:, 0], exact, atol=0.01)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


# ---- ridge algebra ------------------------------------------------------------------
@pytest.mark.parametrize("discount", [1.0, 0.97])
def test_a_mini_batch_equals_the_same_records_one_at_a_time(discount):
    rng = np.random.default_rng(3)
    x, r = rng.normal(size=(50, D)), rng.normal(size=50)
    one = make("lints", n_features=D, discount=discount, l2=0.5)
    many = make("lints", n_features=D, discount=discount, l2=0.5)
    for i in range(50):
        one.update(x[i:i + 1], r[i:i + 1], np.ones(1))
    many.update(x[:20], r[:20], np.ones(20)).update(x[20:], r[20:], np.ones(30))
    np.testing.assert_allclose(one.precision(), many.precision(), rtol=1e-12)
    for name in ("_a_inv", "_b", "theta"):  # theta: computed on demand after single records
        np.testing.assert_allclose(getattr(one, name), getattr(many, name), rtol=1e-9, atol=1e-10)


def test_sherman_morrison_stays_equal_to_the_exact_inverse():
    rng = np.random.default_rng(4)
    p = make("egreedy", n_features=D, l2=0.1)
    for _ in range(700):  # crosses the periodic resync
        x = rng.normal(size=(1, D)) * 10
        p.update(x, x[:, 0], np.ones(1))
    np.testing.assert_allclose(p._a_inv, np.linalg.inv(p.precision()), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_policies_recover_a_planted_linear_model(name):
    rng = np.random.default_rng(0)
    theta = np.array([0.5, -0.3, 0.2, 0.1])
    p = make(name, n_features=D, seed=0, l2=0.1)
    for _ in range(20):
        x = rng.normal(size=(100, D))
        p.update(x, x @ theta + 0.05 * rng.normal(size=100), np.full(100, 0.5))
    np.testing.assert_allclose(p.theta, theta, atol=0.01)


def test_discounting_tracks_a_changed_model():
    rng = np.random.default_rng(1)
    fresh = make("lints", n_features=2, seed=0, discount=0.99)
    stale = make("lints", n_features=2, seed=0, half_life=None)
    for theta in (np.array([1.0, 0.0]), np.array([0.0, 1.0])):
        for _ in range(1000):
            x = rng.normal(size=(1, 2))
            for p in (fresh, stale):
                p.update(x, x @ theta, np.ones(1))
    assert abs(fresh.theta[1] - 1.0) < 0.05 < abs(stale.theta[1] - 1.0)


def test_discounting_keeps_the_prior_in_directions_no_longer_seen():
    p = make("lints", n_features=2, seed=0, discount=0.9, l2=2.0)
    seen = []
    for _ in range(3000):  # feature 1 is always 0: its precision decays only to the prior,
        # restored one coordinate per record (each every D = 2 records, by (1 - lam) l2 D):
        # A_11 = (1 - lam) l2 D / (1 - lam^D) after its refresh, lam times that before
        p.update(np.array([[1.0, 0.0]]), np.ones(1), np.ones(1))
        seen.append(p._a_inv[1, 1])
    top = 0.1 * 2.0 * 2 / (1 - 0.9 ** 2)
    np.testing.assert_allclose([min(seen[-100:]), max(seen[-100:])], [1 / top, 1 / (0.9 * top)])
    assert max(seen) <= 1 / (0.9 * 2.0) + 1e-12  # without the refresh: 0.9^-t / l2
    assert np.isfinite(p.act(np.ones((1, 3, 2)))).all()


# ---- learning against a planted stream ----------------------------------------------
SMALL = {"neural_ts": {"hidden": 8, "train_every": 128, "batch_size": 64, "n_draws": 32}}
MARGIN = 0.2  # uniform earns about 0.49 on this stream; the learners earn 0.70-0.80


def planted_stream(policy, n_rounds=1500, seed=0):
    """A seeded stream with a planted logistic-linear reward; mean expected reward earned."""
    rng = np.random.default_rng(seed)
    theta = np.array([0.3, -0.2, 0.25, 0.0])
    sample_rng = np.random.default_rng(seed + 1)
    rows = np.arange(10)
    total = 0.0
    for _ in range(n_rounds // 10):
        phi = rng.normal(size=(10, K, D))
        mean = 1 / (1 + np.exp(-(phi @ theta) * 3))
        probs = policy.act(phi)
        chosen = (probs.cumsum(axis=1) < sample_rng.random((10, 1))).sum(axis=1).clip(max=K - 1)
        r = (sample_rng.random(10) < mean[rows, chosen]).astype(float)
        policy.update(phi[rows, chosen], r, probs[rows, chosen])
        total += mean[rows, chosen].sum()
    return total / n_rounds


@pytest.mark.parametrize("name", [n for n in available() if n != "uniform"])
def test_every_learner_beats_uniform_by_a_stated_margin(name):
    base = planted_stream(make("uniform", n_features=D, seed=0))
    got = planted_stream(make(name, n_features=D, seed=0, **SMALL.get(name, {})))
    assert got > base + MARGIN, (name, got, base)


def test_neural_policy_learns_a_reward_no_linear_model_can():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3000, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(float)  # XOR of signs
    neural = make("neural_ts", n_features=2, seed=0, hidden=16, train_steps=400, batch_size=64,
                  train_every=3000, lr=1e-2)
    linear = make("lints", n_features=2, seed=0)
    for p in (neural, linear):
        p.update(x, y, np.full(3000, 0.5))
    test = rng.uniform(-1, 1, size=(1000, 2))
    truth = test[:, 0] * test[:, 1] > 0
    accuracy = {n: float(((p.predict(test) > 0.5) == truth).mean())
                for n, p in (("neural", neural), ("linear", linear))}
    assert accuracy["neural"] > 0.85 and accuracy["linear"] < 0.65, accuracy


def test_neural_replay_buffer_keeps_the_latest_records():
    p = make("neural_ts", n_features=1, seed=0, hidden=4, buffer_size=10, train_every=1000)
    for start in range(0, 25, 7):
        x = np.arange(start, min(start + 7, 25), dtype=float)[:, None]
        p.update(x, x[:, 0], np.ones(len(x)))
    assert sorted(p._x[:p._filled, 0].tolist()) == list(range(15, 25))
    assert sorted(p._y[:p._filled].tolist()) == list(range(15, 25))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_neural_policy_refuses_cuda_it_does_not_have():
    with pytest.raises(ValueError, match="^device: 'cuda' requested but torch sees no CUDA"):
        make("neural_ts", n_features=2, device="cuda")
    assert make("neural_ts", n_features=2, device="auto").torch_device == "cpu"


def test_duplicate_candidates_do_not_break_the_posterior_draws():
    p = make("lints", n_features=D, seed=0, n_draws=4000)
    train_x = np.random.default_rng(0).normal(size=(30, D))
    p.update(train_x, train_x[:, 0], np.ones(30))
    row = np.random.default_rng(1).normal(size=D)
    for b in (1, 4):  # joint score draws (B*K < D) and weight draws
        probs = p.act(np.tile(row, (b, 3, 1)))
        assert np.isfinite(probs).all() and (probs > 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
