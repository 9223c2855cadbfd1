"""The Ray backend with real local Ray actors: same results as inline, batching, kill recovery."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from engine import Engine  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def events(n, n_users=40, seed=0):
    rng = np.random.default_rng(seed)
    return [{"user_id": f"u{int(rng.integers(n_users))}", "type": str(rng.choice(["view", "click"])),
             "ts": float(i), "item_id": f"i{int(rng.integers(50))}",
             "topics": [f"t{int(rng.integers(5))}"], "event_id": f"e{i}"} for i in range(n)]


def cands(rng, k=6):
    return [{"id": f"i{j}", "topics": [f"t{j % 5}"], "features": [float(j % 2), rng.random()]}
            for j in rng.choice(50, size=k, replace=False)]


def scenario(eng, seed=0, kill_at=None):
    """Ingest, rank and reward in batches; optionally SIGKILL shard 0's actor mid-stream."""
    rng = np.random.default_rng(seed)
    evs = events(2000, seed=seed)
    decisions = []
    for step, start in enumerate(range(0, len(evs), 200)):
        if kill_at is not None and step == kill_at:
            os.kill(eng.backend.actor_pid(0), signal.SIGKILL)
        eng.ingest(evs[start:start + 200])
        reqs = [{"user_id": f"u{int(rng.integers(40))}", "candidates": cands(rng)}
                for _ in range(16)]
        for d in eng.rank_batch(reqs):
            decisions.append((d.user_id, d.chosen, tuple(np.round(d.probabilities, 12))))
            eng.reward(d.decision_id, float(rng.random() < 0.3))
    profiles = {f"u{u}": eng.profile(f"u{u}", now=5000.0) for u in range(40)}
    return decisions, profiles


def make(tmp_path, name, backend, **kw):
    return Engine(tmp_path / name, policy="lints", item_features=2, shards=2, backend=backend,
                  seed=5, clock=lambda: 0.0, snapshot_every=500, **kw)


def test_ray_matches_inline_and_survives_a_killed_actor(tmp_path, local_ray):
    inline = make(tmp_path, "inline", "inline")
    ref_decisions, ref_profiles = scenario(inline)
    inline.close()

    on_ray = make(tmp_path, "ray", "ray")
    assert on_ray.learners["default"].__class__.__name__ == "RayLearner"
    decisions, profiles = scenario(on_ray)
    on_ray.close()
    assert decisions == ref_decisions
    assert profiles == ref_profiles

    killed = make(tmp_path, "killed", "ray")
    k_decisions, k_profiles = scenario(killed, kill_at=4)
    restarts = killed.backend.restarts
    n_events = killed.store.count_events()
    killed.close()
    assert restarts >= 1
    assert n_events == 2000 + len(k_decisions)  # every event plus one reward event per decision
    assert k_profiles == ref_profiles
    assert k_decisions == ref_decisions


def test_one_remote_call_per_shard_per_batch(tmp_path, local_ray):
    eng = Engine(tmp_path / "calls", policy="lints", item_features=2, shards=2, backend="ray",
                 clock=lambda: 0.0)
    counts = {"n": 0}
    real = eng.backend._call

    def counting(calls):
        counts["n"] += 1
        return real(calls)

    eng.backend._call = counting
    eng.ingest(events(1000))          # 1000 events, 2 shards: one _call round
    rng = np.random.default_rng(0)
    eng.rank_batch([{"user_id": f"u{i}", "candidates": cands(rng)} for i in range(64)])
    assert counts["n"] == 2
    eng.close()


def session_run(learner: str) -> tuple[list, object]:
    """Users in sessions ranking 20 times each under slateq (no training: the same weights
    decide alike on both learners), then the replay buffer the transitions reached."""
    t = [0.0]
    eng = Engine(None, policy="slateq", item_features=2, seed=3, clock=lambda: t[0],
                 learner=learner, learn_batch=4, session_gap=50.0,
                 policy_params={"train_every": 10_000, "hidden": 8, "device": "cpu"})
    assert eng.sessions.variants == {"default"}
    rng = np.random.default_rng(7)
    chosen = []
    for step in range(20):
        t[0] = 10.0 * step
        ds = eng.rank_batch([{"user_id": f"u{u}", "candidates": cands(rng)} for u in range(3)])
        chosen += [d.chosen for d in ds]
        eng.reward_batch([(d.decision_id, float(rng.random())) for d in ds])
        if step == 9:
            eng.ingest([{"user_id": "u0", "type": "session_end", "ts": t[0]}])
    eng.close()  # flushes what is buffered
    return chosen, eng.learners["default"].policy


def test_ray_learner_learns_transitions_as_the_local_one(local_ray):
    local_chosen, local = session_run("local")
    ray_chosen, remote = session_run("ray")
    assert ray_chosen == local_chosen
    # 3 users x 19 followed decisions, u0's 10th ended by session_end; the 3 last decisions
    # are still open at close (no reward-and-next pair is complete for them)
    assert remote._filled == local._filled == 57
    for name in ("_x", "_r", "_done", "_nx", "_nmask"):
        np.testing.assert_array_equal(getattr(remote, name), getattr(local, name))
    assert remote._done.sum() == local._done.sum() == 1
