"""The engine against the simulator, exactly as in production: the simulator's users send
behaviour events, the engine ranks their candidates, and their responses come back as rewards.
On a session preset the users come in sessions (:class:`~simulators.BatchedSessionEnv`): a
user's finished session reaches the engine as a ``session_end`` event, and the run records
every finished session's return and length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from engine import Engine
from simulators import BatchedRecEnv, BatchedSessionEnv, SimConfig

#: Presets whose users come in sessions, each until they leave (run on BatchedSessionEnv).
SESSION_PRESETS = frozenset({"long_term"})


@dataclass
class RunResult:
    """Per-step outcomes of one policy on one seed (arrays of length ``steps``); in session
    runs also the return and length of every session that finished, in the order they did,
    with the step it ended at (the user-steps run by then) and its user's variant."""

    policy: str
    seed: int
    rewards: np.ndarray
    regrets: np.ndarray
    clicks: np.ndarray
    phases: np.ndarray
    extra: dict = field(default_factory=dict)
    episode_returns: np.ndarray | None = None
    episode_lengths: np.ndarray | None = None
    episode_steps: np.ndarray | None = None
    episode_variants: np.ndarray | None = None


def engine_for(sim: SimConfig, policy: str | None, params: Mapping | None, seed: int,
               clock: Callable[[], float], **engine_kwargs) -> Engine:
    """An in-memory engine whose featurizer matches the simulator's observations. With
    ``variants`` in ``engine_kwargs`` the engine runs an online A/B test instead of ``policy``."""
    context = tuple(f"region_{r}" for r in range(sim.n_regions))
    if engine_kwargs.get("variants") is None:
        engine_kwargs.pop("variants", None)
        engine_kwargs.update(policy=policy, policy_params=dict(params or {}))
    return Engine(None, item_features=sim.n_topics + 3, context_features=context, seed=seed,
                  clock=clock, **engine_kwargs)


def to_requests(obs: dict, context_names: tuple[str, ...]) -> list[dict]:
    """Simulator observations -> engine rank requests (ids as strings, topics as names)."""
    requests = []
    feats = obs["item_features"].round(4).tolist()
    for b, user in enumerate(obs["user_id"].tolist()):
        items = obs["item_ids"][b].tolist()
        topics = obs["item_topics"][b].tolist()
        ctx = obs["user_features"][b]
        requests.append({
            "user_id": f"u{user}",
            "candidates": [{"id": f"i{i}", "topics": [f"t{t}"], "features": f}
                           for i, t, f in zip(items, topics, feats[b], strict=True)],
            "context": {name: float(ctx[j]) for j, name in enumerate(context_names)},
        })
    return requests


def run_policy(sim: SimConfig, policy: str, params: Mapping | None = None, *, seed: int = 0,
               steps: int = 20_000, batch_size: int = 200, feed_events: bool = True,
               progress: Callable[[int], None] | None = None, sessions: bool = False,
               **engine_kwargs) -> RunResult:
    """Run ``steps`` user-steps of the simulator with one policy inside the engine. With
    ``sessions``, B users in sessions: each session's end is ingested as ``session_end``,
    and the features carry the session so far (``profile.session_features``)."""
    env = (BatchedSessionEnv if sessions else BatchedRecEnv)(sim, batch_size=batch_size,
                                                              emit_events=feed_events)
    obs = env.reset(seed=seed)
    n_batches = max(1, steps // batch_size)
    # rewards arrive one batch later in simulated time: keep the window well above that
    engine_kwargs.setdefault("wait_window", 4.0 * batch_size * sim.step_seconds)
    if sessions:  # a user in session decides once a batch: the gap must span a batch's time
        engine_kwargs.setdefault("session_gap", 2.0 * batch_size * sim.step_seconds)
        # every policy sees the session so far (what satisfaction leaves a trace in)
        engine_kwargs.setdefault("profile", {"session_features": True})
    returns: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    ended_at: list[np.ndarray] = []
    ended_mask: list[np.ndarray] = []
    eng = engine_for(sim, policy, params, seed, lambda: env.clock, **engine_kwargs)
    context = eng.featurizer.context_features
    rewards = np.zeros(n_batches * batch_size)
    regrets = np.zeros_like(rewards)
    clicks = np.zeros_like(rewards)
    phases = np.zeros_like(rewards)
    variants = np.empty(len(rewards), dtype=object)
    try:
        for t in range(n_batches):
            decisions = eng.rank_batch(to_requests(obs, context))
            actions = np.array([d.candidate_ids.index(d.chosen) for d in decisions])
            obs, r, info = env.step(actions)
            sl = slice(t * batch_size, (t + 1) * batch_size)
            rewards[sl], regrets[sl] = r, info["regret"]
            clicks[sl] = info["clicked"][:, 0]
            phases[sl] = info["phase"]
            variants[sl] = [d.variant for d in decisions]
            eng.reward_batch([(d.decision_id, float(v)) for d, v in zip(decisions, r, strict=True)])
            events = [e for row in info["events"] for e in row] if feed_events else []
            if sessions:
                ended = info["ended"]
                returns.append(info["session_return"][ended])
                lengths.append(info["session_length"][ended])
                ended_at.append(np.full(int(ended.sum()), (t + 1) * batch_size))
                ended_mask.append(np.asarray(ended, dtype=bool))
                events += session_ends(info, t)
            if feed_events or events:
                eng.ingest(events)
            if progress is not None:
                progress(batch_size)
        extra = {"variants": variants, **eng.stats()}
        if len(eng.learners) > 1:
            extra["ab_report"] = eng.ab_report()
    finally:
        eng.close()
    if not sessions:
        return RunResult(policy, seed, rewards, regrets, clicks, phases, extra)
    done = np.concatenate(ended_mask)  # a session ends on its user's decision in its slot
    return RunResult(policy, seed, rewards, regrets, clicks, phases, extra,
                     np.concatenate(returns), np.concatenate(lengths).astype(float),
                     np.concatenate(ended_at).astype(float), variants[done])


def one_thread() -> None:
    """Initializer of a worker process that runs beside others: torch's small networks get
    one thread each (two workers of two threads on two cores run several times slower)."""
    import os
    import sys

    os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is imported (later, in the run)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def session_ends(info: dict, t: int) -> list[dict]:
    """``session_end`` events of the users whose session ended in batch step ``t``."""
    slots = np.flatnonzero(info["ended"]).tolist()
    users = info["users"][slots].tolist()
    return [{"user_id": f"u{u}", "type": "session_end", "ts": float(info["ts"]),
             "event_id": f"end-{t}-{b}"} for b, u in zip(slots, users, strict=True)]
