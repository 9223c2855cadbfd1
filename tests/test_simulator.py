"""The simulator: gymnasium's checker, determinism, action validation, and its behaviours."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import simulators
from simulators import BatchedRecEnv, RecSessionEnv, RecStreamEnv, make_config

SMALL = {"n_users": 200, "n_items": 300}


@pytest.mark.parametrize("env_id", sorted(simulators.ENV_IDS))
def test_check_env_passes_on_every_registered_id(env_id):
    env = gym.make(env_id, **SMALL)
    check_env(env.unwrapped, skip_render_check=True)


def test_slate_env_passes_check_env():
    check_env(RecStreamEnv(preset="stationary", slate_size=3, **SMALL), skip_render_check=True)


def rollout(env, seed, steps=200):
    obs, _ = env.reset(seed=seed)
    out = []
    for t in range(steps):
        obs, r, term, trunc, info = env.step(t % env.config.n_candidates)
        out.append((obs["user_id"], tuple(obs["item_ids"]), r, info["regret"]))
        if term or trunc:
            obs, _ = env.reset()
    return out


@pytest.mark.parametrize("cls", [RecStreamEnv, RecSessionEnv])
def test_seeded_alike_rollouts_are_identical(cls):
    a, b = cls(preset="drifting", **SMALL), cls(preset="drifting", **SMALL)
    assert rollout(a, 7) == rollout(b, 7)
    assert rollout(a, 7) != rollout(b, 8)


def test_wrong_actions_raise_clear_errors():
    env = RecStreamEnv(**SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: must have shape \(\)"):
        env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"candidate indices must lie in \[0, 20\)"):
        env.step(20)
    slate = RecStreamEnv(slate_size=3, **SMALL)
    slate.reset(seed=0)
    info = slate.step(np.array([1, 1, 2]))[4]
    assert not info["clicked"][1]  # a repeated candidate is shown once
    with pytest.raises(ValueError, match=r"action: must have shape \(3,\)"):
        slate.step(np.array([1, 2]))
    batched = BatchedRecEnv(make_config(**SMALL), batch_size=4)
    batched.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(4,\) for the batch"):
        batched.step(np.zeros(3, dtype=int))


def test_vector_env_compatibility():
    envs = gym.make_vec("loopwise/RecStream-v0", num_envs=3, vectorization_mode="sync", **SMALL)
    obs, _ = envs.reset(seed=0)
    assert obs["item_features"].shape == (3, 20, 15)
    obs, rewards, term, trunc, info = envs.step(np.array([0, 1, 2]))
    assert rewards.shape == (3,)
    envs.close()


def test_shift_changes_the_best_item_for_about_the_configured_fraction():
    for fraction in (0.3, 0.7):
        core = simulators.SimCore(make_config("drifting", shift_fraction=fraction, drift_std=0.0,
                                              n_users=3000), np.random.default_rng(1))
        users = np.arange(3000)
        catalog = np.broadcast_to(np.arange(core.n_active), (3000, core.n_active))
        before = core.expected_rewards(users, catalog).argmax(axis=1)
        moved = core.shift()
        after = core.expected_rewards(users, catalog).argmax(axis=1)
        changed = (before != after).mean()
        assert abs(len(moved) / 3000 - fraction) < 0.03
        assert fraction - 0.08 < changed <= fraction + 0.01, (fraction, changed)
        assert (before[np.setdiff1d(users, moved)] == after[np.setdiff1d(users, moved)]).all()
        assert core.phase == 1


def test_drifting_env_reports_the_phase():
    env = RecStreamEnv(preset="drifting", shift_step=50, **SMALL)
    env.reset(seed=0)
    phases = [env.step(0)[4]["phase"] for _ in range(100)]
    assert phases[:50] == [0] * 50 and phases[51:] == [1] * 49


def test_fatigue_lowers_expected_reward_of_a_repeated_topic():
    env = RecStreamEnv(preset="fatigue", **SMALL)
    env.reset(seed=3)
    core = env.core
    user = np.array([5])
    items = core.draw_candidates(1)
    fresh = core.expected_rewards(user, items)[0]
    for _ in range(5):  # the user is shown item 0's topic five times
        core.respond(user, items, np.array([[0]]))
    tired = core.expected_rewards(user, items)[0]
    same_topic = core.topic[items[0]] == core.topic[items[0, 0]]
    assert (tired[same_topic] < 0.6 * fresh[same_topic]).all()
    np.testing.assert_allclose(tired[~same_topic], fresh[~same_topic])


def test_long_term_clickbait_wins_clicks_but_loses_return():
    def run(pick, episodes=300):
        env = RecSessionEnv(preset="long_term", **SMALL)
        obs, _ = env.reset(seed=0)
        clicks = steps = 0
        returns = []
        total = 0.0
        while len(returns) < episodes:
            bait = obs["item_features"][:, -2]
            obs, r, term, trunc, info = env.step(int(pick(bait)))
            clicks += int(info["clicked"][0])
            steps += 1
            total += r
            if term or trunc:
                returns.append(total)
                total = 0.0
                obs, _ = env.reset()
        return clicks / steps, float(np.mean(returns))

    bait_ctr, bait_return = run(np.argmax)
    quality_ctr, quality_return = run(np.argmin)
    assert bait_ctr > quality_ctr + 0.1, (bait_ctr, quality_ctr)
    assert quality_return > 1.5 * bait_return, (quality_return, bait_return)


def test_cold_start_items_arrive_without_history():
    env = RecStreamEnv(preset="cold_start", **SMALL)
    obs, _ = env.reset(seed=0)
    first_new = env.core.n_active
    seen_new = []
    for _ in range(1500):
        obs, *_ = env.step(0)
        new = obs["item_ids"] >= first_new
        if new.any():
            seen_new.append(obs["item_features"][new])
    assert env.core.n_active == first_new + 1500 // 50 * 5
    assert seen_new, "new items never reached the candidates"
    feats = np.concatenate(seen_new)
    lowest = env.core.popularity[:first_new].min()
    assert np.allclose(feats[:, -3], lowest)  # no popularity history
    assert (feats[:, -1] > 0).all() and feats[:, -1].max() > 0.5  # shown while fresh


def test_events_follow_the_engine_schema():
    from engine.events import validate_events

    env = RecStreamEnv(emit_events=True, **SMALL)
    env.reset(seed=0)
    events = []
    for _ in range(50):
        events += env.step(0)[4]["events"]
    validated = validate_events(events)
    assert {e.type for e in validated} >= {"view"}
    assert len({e.event_id for e in validated}) == len(events)
    b = BatchedRecEnv(make_config(**SMALL), batch_size=16, emit_events=True)
    b.reset(seed=0)
    rows = b.step(np.zeros(16, dtype=int))[2]["events"]
    assert len(rows) == 16 and all(r[0]["type"] == "view" for r in rows)


def test_batched_matches_ground_truth_definitions():
    env = BatchedRecEnv(make_config("stationary", **SMALL), batch_size=512)
    obs = env.reset(seed=0)
    total_r, total_exp = 0.0, 0.0
    for _ in range(20):
        best = np.zeros(512, dtype=int)
        obs, r, info = env.step(best)
        total_r += r.sum()
        total_exp += info["expected_rewards"][:, 0].sum()
    # realized rewards match the reported expectations (10,240 draws: within 5%)
    assert abs(total_r / total_exp - 1) < 0.05


def test_candidate_draws_follow_the_documented_law():
    core = simulators.SimCore(make_config("cold_start", n_users=50, n_items=400, max_items=600),
                              np.random.default_rng(2))
    core.advance(1200)  # 24 arrivals: 10 of them fresh (born within 500 steps), 14 older
    n, n0 = core.n_active, 400
    pop = np.exp(core.popularity[:n])
    weight = 0.7 / n + 0.3 * pop / pop.sum()
    weight[core.step_count - core.birth[:n] < 500] *= 5.0
    weight /= weight.sum()
    freq = np.bincount(core._draw_items((4000, 100)).ravel(), minlength=n) / 400_000
    for part in (slice(0, n0), slice(n0, core._first_fresh()), slice(core._first_fresh(), n)):
        assert abs(freq[part].sum() - weight[part].sum()) < 0.005, part
    top = np.argsort(weight[:n0])[-10:]  # the most popular initial items, one by one
    np.testing.assert_allclose(freq[top], weight[top], rtol=0.1)
    assert core.stable_for() == 50 - core.step_count % 50


def test_closed_catalog_draws_map_uniforms_as_np_interp():
    core = simulators.SimCore(make_config("stationary", n_users=50, n_items=400),
                              np.random.default_rng(3))
    state = core.rng.bit_generator.state
    got = core._draw_items((64, 40))
    core.rng.bit_generator.state = state
    edges, points, _ = core._segments()
    y = np.interp(core.rng.random((64, 40)) * edges[-1], edges, points)
    col = np.minimum(y.astype(np.int64), 2 * 400 - 1)
    alias = y - col >= core._line_prob[col]
    np.testing.assert_array_equal(got, core._line_pick[col + alias * len(core._line_prob)])


def test_trend_changes_the_reward_model_for_everyone_and_keeps_tastes():
    core = simulators.SimCore(make_config("trend", n_users=500), np.random.default_rng(2))
    users = np.arange(500)
    catalog = np.broadcast_to(np.arange(core.n_active), (500, core.n_active))
    interest = core.interest.copy()
    before = core.click_probs(users, catalog)
    core.advance(core.config.shift_step)  # the shift fires on the way
    after = core.click_probs(users, catalog)
    assert core.phase == 1 and (core.changed_at == core.config.shift_step).all()
    np.testing.assert_array_equal(core.interest, interest)  # nobody's tastes moved
    assert (before.argmax(axis=1) != after.argmax(axis=1)).mean() > 0.7  # most users' best
    # every user's click logit of item i moved by the same amount: clickbait, which paid
    # 1.5 per unit, costs 1.5; popularity's 0.3 became -0.3; the item's topic jumped
    n = core.n_active
    change = np.log(after / (1 - after)) - np.log(before / (1 - before))
    expected = (-3.0 * core.clickbait[:n] - 0.6 * core.popularity[:n]
                + core.topic_offset[core.topic[:n]])
    np.testing.assert_allclose(change, np.broadcast_to(expected, change.shape), atol=1e-8)
    assert core.topic_offset.std() > 0.5


def test_trend_ground_truth_in_info_follows_the_change():
    env = RecStreamEnv(preset="trend", shift_step=300, **SMALL)
    obs, _ = env.reset(seed=4)
    for t in range(600):  # rows prepared before the shift (256 at a time) are recomputed
        user, items = np.array([obs["user_id"]]), obs["item_ids"][None].astype(np.int64)
        obs, _, _, _, info = env.step(0)
        if t > 300:
            np.testing.assert_allclose(info["expected_rewards"],
                                       env.core.expected_rewards(user, items)[0], rtol=1e-12)
    assert info["phase"] == 1
