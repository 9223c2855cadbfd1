"""Off-policy estimators on small hand-computed logs: known answers, identities and limits
between estimators, position-aware weights, intervals, cross-fitting, and a table of
invalid inputs with the exact error each raises."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ValidationError
from experiments.ope import (
    DM,
    DR,
    DROS,
    IPS,
    MLP,
    SNDR,
    SNIPS,
    OPEInputError,
    Replay,
    Ridge,
    SwitchDR,
    cross_fit,
    default_estimators,
    evaluate,
    make_estimator,
    run_ope_on_arrays,
    validate,
)
from experiments.ope import bootstrap as bootstrap_module

# Four rounds, two actions; the target always plays action 1; the model predicts 0.5.
REWARD = [1.0, 0.0, 1.0, 1.0]
ACTION = [0, 1, 1, 0]
PSCORE = [0.5, 0.8, 0.4, 0.5]
DIST = np.tile([[0.0], [1.0]], (4, 1, 1))
Q = np.full((4, 2, 1), 0.5)
W = np.array([0.0, 1.25, 2.5, 0.0])          # target prob / pscore
E = np.array(REWARD) - 0.5                    # residuals r - q
DROS_W = 1.0 * W / (W ** 2 + 1.0)


@pytest.mark.parametrize(("estimator", "expected"), [
    (Replay(), 0.5),                                   # rewards 0, 1 on the matching rounds
    (IPS(), (W * REWARD).mean()),                      # 0.625
    (IPS(clip=2.0), (np.minimum(W, 2.0) * REWARD).mean()),
    (SNIPS(), (W * REWARD).sum() / W.sum()),
    (DM(), 0.5),
    (DR(), 0.5 + (W * E).mean()),                      # 0.65625
    (SNDR(), 0.5 + (W * E).sum() / W.sum()),
    (SwitchDR(tau=2.0), 0.5 + (np.where(W <= 2.0, W, 0) * E).mean()),
    (DROS(lam=1.0), 0.5 + (DROS_W * E).mean()),
], ids=lambda x: getattr(x, "name", ""))
def test_known_answers(estimator, expected):
    value = estimator.estimate_policy_value(REWARD, ACTION, PSCORE, DIST,
                                            estimated_rewards_by_reg_model=Q)
    assert value == pytest.approx(expected, abs=1e-12)


def test_weights_are_position_aware():
    # the target plays action 0 in slot 0 and action 1 in slot 1; both rounds logged action 1
    dist = np.zeros((2, 2, 2))
    dist[:, 0, 0] = 1.0
    dist[:, 1, 1] = 1.0
    args = ([1.0, 1.0], [1, 1], [0.5, 0.5], dist)
    assert IPS().estimate_policy_value(*args, position=[0, 1]) == pytest.approx(1.0)
    assert IPS().estimate_policy_value(*args, position=[1, 1]) == pytest.approx(2.0)
    assert IPS().estimate_policy_value(*args) == 0.0            # position defaults to slot 0
    q = np.zeros((2, 2, 2))
    q[:, 0, 0], q[:, 1, 1] = 0.3, 0.9          # the model's value of the target: 0.3 / 0.9
    assert DM().estimate_policy_value(*args, position=[0, 1],
                                      estimated_rewards_by_reg_model=q) == pytest.approx(0.6)


def random_log(seed, n=400, k=4, deterministic=False):
    rng = np.random.default_rng(seed)
    logging = rng.dirichlet(np.ones(k), size=n)
    action = np.array([rng.choice(k, p=p) for p in logging])
    reward = rng.random(n)
    if deterministic:
        dist = np.eye(k)[rng.integers(k, size=n)][:, :, None]
    else:
        dist = rng.dirichlet(np.ones(k), size=n)[:, :, None]
    q = rng.random((n, k, 1))
    return reward, action, logging[np.arange(n), action], dist, q, logging


def test_identities_between_estimators():
    reward, action, pscore, dist, q, logging = random_log(0)
    args = (reward, action, pscore, dist)
    d = validate(*args, estimated_rewards=q)
    zero = validate(*args, estimated_rewards=np.zeros_like(q))
    value = {e.name: e.estimate(d) for e in
             [IPS(), DM(), DR(), SNIPS(), SNDR(), IPS(clip=1e9), SwitchDR(1e9), SwitchDR(1e-9),
              DROS(1e12), DROS(1e-12)]}
    assert value["IPS(clip=1e+09)"] == value["IPS"]
    assert value["SwitchDR(tau=1e+09)"] == pytest.approx(value["DR"], abs=1e-12)
    assert value["SwitchDR(tau=1e-09)"] == pytest.approx(value["DM"], abs=1e-12)
    assert value["DR-OS(lambda=1e+12)"] == pytest.approx(value["DR"], abs=1e-8)
    assert value["DR-OS(lambda=1e-12)"] == pytest.approx(value["DM"], abs=1e-8)
    assert DR().estimate(zero) == pytest.approx(IPS().estimate(zero), abs=1e-12)
    assert SNDR().estimate(zero) == pytest.approx(SNIPS().estimate(zero), abs=1e-12)
    # SNIPS does not change when every propensity is scaled by the same constant
    assert SNIPS().estimate_policy_value(reward, action, pscore / 2, dist) == pytest.approx(
        value["SNIPS"], abs=1e-12)
    # the target equal to the logging policy: every weight is 1 and IPS = SNIPS = mean reward
    same = validate(reward, action, pscore, logging[:, :, None])
    assert np.allclose(same.weights(), 1.0)
    assert IPS().estimate(same) == pytest.approx(reward.mean(), abs=1e-12)
    assert SNIPS().estimate(same) == pytest.approx(reward.mean(), abs=1e-12)


def test_replay_of_a_deterministic_target_is_the_mean_reward_on_matching_rounds():
    reward, action, pscore, dist, _, _ = random_log(1, deterministic=True)
    match = dist[np.arange(len(action)), action, 0] == 1
    assert 50 < match.sum() < 350
    assert Replay().estimate_policy_value(reward, action, pscore, dist) == pytest.approx(
        reward[match].mean(), abs=1e-12)
    # with uniform logging, SNIPS is the same ratio
    uniform = np.full(len(action), 0.25)
    assert SNIPS().estimate_policy_value(reward, action, uniform, dist) == pytest.approx(
        reward[match].mean(), abs=1e-12)


def test_interval_matches_the_normal_approximation_and_is_reproducible():
    rng = np.random.default_rng(3)
    n = 4000
    action = rng.integers(4, size=n)
    reward = (rng.random(n) < 0.3 + 0.1 * action).astype(float)
    dist = np.tile(np.array([0.1, 0.2, 0.3, 0.4])[:, None], (n, 1, 1))
    args = (reward, action, np.full(n, 0.25), dist)
    iv = IPS().estimate_interval(*args, n_bootstrap=500, random_state=7)
    assert iv.low < iv.estimate < iv.high
    w_r = dist[np.arange(n), action, 0] / 0.25 * reward
    half = 1.96 * w_r.std() / np.sqrt(n)
    assert (iv.high - iv.low) / 2 == pytest.approx(half, rel=0.1)
    assert IPS().estimate_interval(*args, n_bootstrap=500, random_state=7) == iv
    assert IPS().estimate_interval(*args, n_bootstrap=500, random_state=8) != iv
    narrow = IPS().estimate_interval(*args, alpha=0.5, n_bootstrap=500, random_state=7)
    assert iv.low < narrow.low < narrow.high < iv.high


def test_bootstrap_chunks_do_not_change_the_answer(monkeypatch):
    reward, action, pscore, dist, q, _ = random_log(2)
    d = validate(reward, action, pscore, dist, estimated_rewards=q)
    whole = evaluate(d, n_bootstrap=64, seed=5)
    monkeypatch.setattr(bootstrap_module, "CHUNK_ENTRIES", 1000)    # 2 resamples per chunk
    chunked = evaluate(d, n_bootstrap=64, seed=5)
    assert [(e.low, e.high) for e in whole] == [(e.low, e.high) for e in chunked]


def test_evaluate_reports_per_estimator_weights_and_shared_diagnostics():
    reward, action, pscore, dist, q, _ = random_log(4)
    d = validate(reward, action, pscore, dist, estimated_rewards=q)
    result = evaluate(d, n_bootstrap=20)
    assert result.names == [e.name for e in default_estimators()]
    w = d.weights()
    kish = w.sum() ** 2 / (w ** 2).sum()
    assert result["IPS"].ess == pytest.approx(kish)
    assert result["DM"].ess == len(reward)
    clipped = np.minimum(w, 1.0)
    assert evaluate(d, [IPS(clip=1.0)], n_bootstrap=5)[0].ess == pytest.approx(
        clipped.sum() ** 2 / (clipped ** 2).sum())
    for e in result:
        assert e.max_weight == pytest.approx(w.max())
        assert e.mean_weight == pytest.approx(w.mean())
        assert e.zero_target_share == 0.0
    no_model = validate(reward, action, pscore, dist)
    assert evaluate(no_model, n_bootstrap=5).names == ["Replay", "IPS", "IPS(clip=100)", "SNIPS"]
    with pytest.raises(OPEInputError, match="estimated_rewards_by_reg_model: DR needs"):
        evaluate(no_model, ["dr"], n_bootstrap=5)


def test_make_estimator_names_and_parameters():
    assert [make_estimator(s).name for s in ("replay", "IPS", "ips:5", "SNIPS", "dm", "dr",
                                             "sndr", "switch-dr:3", "DR-OS:7")] == [
        "Replay", "IPS", "IPS(clip=5)", "SNIPS", "DM", "DR", "SNDR", "SwitchDR(tau=3)",
        "DR-OS(lambda=7)"]


class MeanModel:
    """Predicts the mean of the rewards it was fit on."""

    def fit(self, x, y):
        self.mean_ = y.mean()
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)


def test_cross_fitting_predicts_each_fold_from_the_other_folds():
    rng = np.random.default_rng(0)
    n = 90
    reward = rng.random(n)
    action = rng.integers(3, size=n)
    folds = np.arange(n) % 3
    q = cross_fit(reward, action, np.zeros(n, int), 3, 1, reward_model=MeanModel(),
                  folds=folds)
    for f in range(3):
        assert np.allclose(q[folds == f], reward[folds != f].mean())
    # a linear model that can represent the truth recovers it; predictions stay in range
    x = rng.normal(size=(600, 2))
    action = rng.integers(2, size=600)
    truth = np.where(action == 1, 0.5 + 0.2 * x[:, 0], 0.3 - 0.1 * x[:, 1])
    q = cross_fit(truth, action, np.zeros(600, int), 2, 1, contexts=x,
                  reward_model=Ridge(l2=1e-6), clip=False)
    assert np.allclose(q[np.arange(600), action, 0], truth, atol=1e-6)
    assert np.allclose(q[:, 0, 0], 0.3 - 0.1 * x[:, 1], atol=1e-6)


def test_mlp_reward_model_fits_what_ridge_cannot():
    rng = np.random.default_rng(1)
    n = 800
    x = rng.uniform(-1.5, 1.5, size=(n, 1))
    action = rng.integers(2, size=n)
    truth = np.where(action == 1, x[:, 0] ** 2, 0.5)
    reward = truth + 0.05 * rng.normal(size=n)
    args = (reward, action, np.zeros(n, int), 2, 1)
    rmse = {}
    for name, model in [("ridge", Ridge()), ("mlp", MLP(hidden=32, epochs=300, seed=0))]:
        q = cross_fit(*args, contexts=x, reward_model=model, clip=False)
        rmse[name] = float(np.sqrt(np.mean((q[np.arange(n), action, 0] - truth) ** 2)))
    assert rmse["mlp"] < 0.1 < 0.3 < rmse["ridge"], rmse


BASE = {"reward": [1.0, 0.0], "action": [0, 1], "pscore": [0.5, 0.5],
        "action_dist": np.full((2, 2, 1), 0.5)}


@pytest.mark.parametrize(("change", "message"), [
    ({"pscore": [0.5, 0.0]}, "pscore: propensities must lie in (0, 1]; round 1 has 0.0"),
    ({"pscore": [0.5, 1.2]}, "pscore: propensities must lie in (0, 1]; round 1 has 1.2"),
    ({"pscore": [-0.1, 0.5]}, "pscore: propensities must lie in (0, 1]; round 0 has -0.1"),
    ({"pscore": [np.nan, 0.5]}, "pscore: propensities must lie in (0, 1]; round 0 has nan"),
    ({"pscore": [0.5]}, "pscore: has 1 rounds, reward has 2"),
    ({"pscore": ["a", "b"]}, "pscore: must be numbers"),
    ({"action": [0, 5]}, "action: indices must lie in [0, 2) (the columns of action_dist); "
                         "round 1 has 5"),
    ({"action": [-1, 0]}, "action: indices must lie in [0, 2)"),
    ({"action": [0.5, 1]}, "action: must be integer indices; round 0 has 0.5"),
    ({"action": ["x", "y"]}, "action: must be integer indices (got dtype <U1)"),
    ({"action": [[0, 1]]}, "action: must be one-dimensional (got shape (1, 2))"),
    ({"reward": [1.0]}, "action: has 2 rounds, reward has 1"),
    ({"reward": []}, "reward: the log has no rounds"),
    ({"reward": [1.0, np.inf]}, "reward: must be finite; round 1 is inf"),
    ({"position": [0, 1]}, "position: indices must lie in [0, 1) (action_dist's last axis); "
                           "round 1 has 1"),
    ({"position": [0, 0, 0]}, "position: has 3 rounds, reward has 2"),
    ({"action_dist": np.full((2, 2), 0.5)},
     "action_dist: must have shape (n_rounds=2, n_actions, len_list) (got (2, 2))"),
    ({"action_dist": np.full((3, 2, 1), 0.5)},
     "action_dist: must have shape (n_rounds=2, n_actions, len_list) (got (3, 2, 1))"),
    ({"action_dist": np.full((2, 2, 1), 0.7)},
     "action_dist: probabilities over actions must sum to 1 for every round and position; "
     "round 0, position 0 sums to 1.4"),
    ({"action_dist": np.array([[[1.5], [-0.5]], [[0.5], [0.5]]])},
     "action_dist: probabilities must be >= 0; round 0, action 1, position 0 has -0.5"),
    ({"action_dist": np.full((2, 2, 1), np.nan)}, "action_dist: must be finite"),
    ({"estimated_rewards": np.zeros((2, 3, 1))},
     "estimated_rewards: must have action_dist's shape (2, 2, 1) (got (2, 3, 1))"),
    ({"estimated_rewards": np.full((2, 2, 1), np.nan)}, "estimated_rewards: must be finite"),
])
def test_bad_input_is_named(change, message):
    with pytest.raises(OPEInputError) as err:
        validate(**{**BASE, **change})
    assert message in str(err.value)
    # the estimators' public methods run the same checks
    args = {**BASE, **change}
    q = args.pop("estimated_rewards", None)
    with pytest.raises(OPEInputError, match="^" + message.split(":")[0] + ":"):
        DR().estimate_policy_value(**args, estimated_rewards_by_reg_model=q
                                   if q is not None else np.zeros((2, 2, 1)))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: IPS(clip=0), ValueError, "clip: must be > 0 (got 0)"),
    (lambda: IPS(clip="5"), TypeError, "clip: must be a real number (got '5')"),
    (lambda: SwitchDR(tau=-1.0), ValueError, "tau: must be > 0 (got -1.0)"),
    (lambda: DROS(lam=0.0), ValueError, "lam: must be > 0 (got 0.0)"),
    (lambda: DM().estimate_policy_value(**BASE), OPEInputError,
     "estimated_rewards_by_reg_model: DM needs a reward model's predictions"),
    (lambda: IPS().estimate_interval(**BASE, alpha=1.5), ValueError,
     "alpha: must lie in (0, 1) (got 1.5)"),
    (lambda: IPS().estimate_interval(**BASE, n_bootstrap=0), ValueError,
     "n_bootstrap: must be an integer >= 1 (got 0)"),
    (lambda: IPS().estimate_interval(**BASE, n_bootstrap=2.5), TypeError,
     "n_bootstrap: must be an integer >= 1 (got 2.5)"),
    (lambda: make_estimator("magic"), OPEInputError,
     "estimators: unknown estimator 'magic'; choose from replay, ips, snips"),
    (lambda: make_estimator("dm:3"), OPEInputError, "estimators: 'dm' takes no parameter"),
    (lambda: make_estimator("ips:x"), OPEInputError, "estimators: clip in 'ips:x' must be a"),
    (lambda: make_estimator("ips:-1"), OPEInputError, "clip: must be > 0 (got -1.0)"),
    (lambda: run_ope_on_arrays(**BASE, estimators=[]), OPEInputError,
     "estimators: the list is empty"),
    (lambda: run_ope_on_arrays(**BASE, estimators=[3]), TypeError,
     "estimators: each must be an Estimator or a name (got 3)"),
    (lambda: run_ope_on_arrays(**BASE, k_folds=1), ValueError,
     "k_folds: must lie in [2, n_rounds=2] (got 1)"),
    (lambda: run_ope_on_arrays(**BASE, k_folds=2, reward_model=object()), TypeError,
     "reward_model: must have fit(X, y) and predict(X) methods (got <object "),
    (lambda: run_ope_on_arrays(**BASE, k_folds=2, contexts=np.zeros((3, 2))), OPEInputError,
     "contexts: must have shape (n_rounds=2, n_features) (got (3, 2))"),
    (lambda: run_ope_on_arrays(**BASE, k_folds=2,
                               action_context=np.zeros((2, 3, 4))), OPEInputError,
     "action_context: must have shape (n_rounds=2, n_actions=2, n_features) (got (2, 3, 4))"),
    (lambda: run_ope_on_arrays(**BASE, estimated_rewards=np.zeros((2, 2, 1)),
                               refit_bootstrap=True), OPEInputError,
     "refit_bootstrap: needs a reward model to refit, but estimated_rewards were given"),
])
def test_bad_parameters_are_named(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert message in str(err.value)
    assert isinstance(err.value, ValidationError)  # the one hierarchy every package shares


@pytest.mark.parametrize("estimator", default_estimators(), ids=lambda e: e.name)
def test_estimator_contract(estimator):
    """Every estimator: pickles, leaves its inputs alone, repeats itself under a seed, and
    is rebuilt from its repr-listed parameters."""
    import pickle

    reward, action, pscore, dist, q, _ = random_log(6)
    inputs = [reward, action, pscore, dist, q]
    copies = [a.copy() for a in inputs]
    kwargs = dict(estimated_rewards_by_reg_model=q, n_bootstrap=30, random_state=1)
    first = estimator.estimate_interval(reward, action, pscore, dist, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(inputs, copies, strict=True))
    clone = pickle.loads(pickle.dumps(estimator))
    assert clone.estimate_interval(reward, action, pscore, dist, **kwargs) == first
    rebuilt = type(estimator)(**{k: v for k, v in vars(estimator).items()})
    assert repr(rebuilt) == repr(estimator) and rebuilt.name == estimator.name
    assert first.low <= first.estimate <= first.high


@pytest.mark.parametrize(("n_actions", "len_list", "d_x", "action_features"),
                         [(20, 1, 5, False), (7, 3, 4, False), (6, 2, 0, False), (5, 3, 3, True)])
def test_ridge_scores_from_the_design_structure_equal_scoring_built_rows(n_actions, len_list,
                                                                          d_x, action_features):
    """Ridge's fast path (scores from the design's blocks) against the generic path, which
    builds every (round, action, position) row and calls predict (a Ridge subclass takes it)."""

    class GenericRidge(Ridge):
        pass

    rng = np.random.default_rng(n_actions)
    n = 900
    action, position = rng.integers(n_actions, size=n), rng.integers(len_list, size=n)
    reward = rng.random(n)
    contexts = rng.normal(size=(n, d_x)) if d_x else None
    action_context = rng.normal(size=(n, n_actions, 4)) if action_features else None
    folds = rng.permutation(n) % 3
    fast, generic = (cross_fit(reward, action, position, n_actions, len_list, contexts=contexts,
                               action_context=action_context, folds=folds, clip=False,
                               reward_model=model) for model in (Ridge(), GenericRidge()))
    assert fast.shape == (n, n_actions, len_list)
    np.testing.assert_allclose(fast, generic, rtol=0, atol=1e-12)
