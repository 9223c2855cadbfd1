"""Batched sessions: determinism, refills, session totals, and the single-user env's law."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import BatchedSessionEnv, RecSessionEnv, make_config

SMALL = {"n_users": 200, "n_items": 300}


def bait_pick(obs, quality=False):
    bait = obs["item_features"][..., -2]
    return (bait.argmin(axis=-1) if quality else bait.argmax(axis=-1)).astype(np.int64)


def rollout(seed, steps=60, batch=16):
    env = BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=batch)
    obs = env.reset(seed=seed)
    out = []
    for t in range(steps):
        obs, r, info = env.step(np.full(batch, t % 20))
        out.append((obs["user_id"].tolist(), obs["item_ids"].tolist(), r.tolist(),
                    info["ended"].tolist(), info["session_return"].tolist()))
    return out


def test_seeded_alike_rollouts_are_identical():
    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


def test_sessions_are_tracked_refilled_and_totalled():
    b = 32
    env = BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=b)
    obs = env.reset(seed=0)
    assert (obs["session_step"] == 0).all() and obs["new_session"].all()
    running, steps, finished = np.zeros(b), np.zeros(b, dtype=int), 0
    for _ in range(150):
        users = obs["user_id"]
        assert len(set(users.tolist())) == b  # one session per user at a time
        np.testing.assert_array_equal(obs["session_step"], steps)
        obs, r, info = env.step(bait_pick(obs))
        np.testing.assert_array_equal(info["users"], users)
        running += r
        steps += 1
        np.testing.assert_allclose(info["session_return"], running)
        np.testing.assert_array_equal(info["session_length"], steps)
        ended = info["ended"]
        np.testing.assert_array_equal(ended, info["terminated"] | info["truncated"])
        assert not (info["terminated"] & info["truncated"]).any()
        assert (info["truncated"] == (steps >= 60) & ~info["terminated"]).all()
        # ended slots hold a new user at step 0 with satisfaction 0; the others go on
        assert (obs["new_session"] == ended).all() and (obs["session_step"][ended] == 0).all()
        assert (obs["user_id"][~ended] == users[~ended]).all()
        assert (env.core.satisfaction[obs["user_id"][ended]] == 0).all()
        finished += int(ended.sum())
        running[ended], steps[ended] = 0.0, 0
    assert finished > 2 * b


def test_ground_truth_matches_realized_rewards():
    env = BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=128)
    obs = env.reset(seed=1)
    total_r = total_exp = 0.0
    for _ in range(60):
        items = obs["item_ids"]
        expected = env.core.expected_rewards(obs["user_id"], items)
        obs, r, info = env.step(np.zeros(128, dtype=np.int64))
        np.testing.assert_allclose(info["expected_rewards"], expected, rtol=1e-12)
        assert (info["regret"] >= 0).all()
        total_r += r.sum()
        total_exp += info["expected_rewards"][:, 0].sum()
    assert abs(total_r / total_exp - 1) < 0.06  # 7,680 draws


def session_stats(env_kind, quality, sessions=400, seed=0):
    lengths, returns = [], []
    if env_kind == "batched":
        # the sessions that started in the first `start` steps, each followed to its end
        # (the first ones to end are the short ones: counting those would bias the means)
        b = 50
        env = BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=b)
        obs = env.reset(seed=seed)
        started, t = np.zeros(b, dtype=int), 0
        start = 1
        while len(lengths) < sessions or t < start + 60:
            obs, _, info = env.step(bait_pick(obs, quality))
            t += 1
            keep = info["ended"] & (started < start)
            lengths += info["session_length"][keep].tolist()
            returns += info["session_return"][keep].tolist()
            started[info["ended"]] = t
            if len(lengths) + (started < start).sum() < sessions:
                start = t + 1  # not enough sessions yet: keep starting them
    else:
        env = RecSessionEnv(preset="long_term", **SMALL)
        obs, _ = env.reset(seed=seed)
        total, t = 0.0, 0
        while len(lengths) < sessions:
            obs, r, term, trunc, _ = env.step(int(bait_pick(obs, quality)))
            total, t = total + r, t + 1
            if term or trunc:
                lengths.append(t)
                returns.append(total)
                total, t = 0.0, 0
                obs, _ = env.reset()
    return float(np.mean(lengths)), float(np.mean(returns))


def test_same_law_as_the_single_user_session_and_clickbait_loses_users():
    bait_len, bait_ret = session_stats("batched", quality=False)
    good_len, good_ret = session_stats("batched", quality=True)
    assert good_len > 1.5 * bait_len and good_ret > 1.5 * bait_ret, (bait_len, good_len)
    for quality, (length, ret) in ((False, (bait_len, bait_ret)), (True, (good_len, good_ret))):
        one_len, one_ret = session_stats("single", quality)
        # 400 sessions each: means within 15% (about 3 standard errors)
        assert abs(length / one_len - 1) < 0.15, (quality, length, one_len)
        assert abs(ret / one_ret - 1) < 0.15, (quality, ret, one_ret)


def test_slates_and_events():
    env = BatchedSessionEnv(make_config("long_term", slate_size=3, **SMALL), batch_size=8,
                            emit_events=True)
    obs = env.reset(seed=2)
    obs, r, info = env.step(np.tile(np.arange(3), (8, 1)))
    assert r.shape == (8,) and info["clicked"].shape == (8, 3)
    assert len(info["events"]) == 8 and all(e[0]["type"] == "view" for e in info["events"])
    with pytest.raises(ValueError, match=r"\(8, 3\) for the batch"):
        env.step(np.zeros(8, dtype=np.int64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="^batch_size: must be at most n_users=200"):
        BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=201)
    with pytest.raises(ValueError, match="^batch_size: must be an integer >= 1"):
        BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=0)
    with pytest.raises(RuntimeError, match="call reset"):
        BatchedSessionEnv(make_config("long_term", **SMALL), batch_size=4).step(np.zeros(4))


def test_a_full_population_stays_one_session_per_user():
    env = BatchedSessionEnv(make_config("long_term", n_users=40, n_items=100), batch_size=40)
    obs = env.reset(seed=5)
    for _ in range(30):
        assert sorted(obs["user_id"].tolist()) == list(range(40))
        obs, _, _ = env.step(bait_pick(obs))
