"""Read-side views of the store for people: a user's decisions and interest history, a
decision as logged, per-minute live figures, and the A/B report over time.

Every query is indexed or bounded (:func:`ensure_indexes`; ``limit`` arguments), so a page
over a store of 100,000 decisions still answers in milliseconds. These views read; they
never change what the engine decided or learned.

Examples
--------
>>> from engine import Engine
>>> eng = Engine(policy="lints", item_features=1, seed=0, clock=lambda: 120.0)
>>> ensure_indexes(eng.store)
>>> _ = eng.ingest([{"user_id": "u1", "type": "click", "ts": 60.0, "item_id": "a",
...                  "topics": ["jazz"]}])
>>> d = eng.rank("u1", [{"id": "a", "features": [1.0]}, {"id": "b", "features": [0.0]}])
>>> [r["decision_id"] == d.decision_id for r in user_decisions(eng.store, "u1")]
[True]
>>> find_users(eng.store, "u")
['u1']
>>> live(eng.store)["decisions"]
[{'minute': 120.0, 'variant': 'default', 'decisions': 1, 'learned': 0, 'mean_reward': None}]
>>> eng.close()
"""

from __future__ import annotations

import json
import math

import numpy as np

from engine.abtest import VariantStats, ab_report
from engine.store import decode_extra

LEARNED = ("joined", "default")  # reward statuses a policy learns from
INDEXES = (  # each read below scans an index range or a covering index, never the table
    "CREATE INDEX IF NOT EXISTS events_user ON events(user_id, seq)",
    "CREATE INDEX IF NOT EXISTS decisions_user ON decisions(user_id, ts)",
    "CREATE INDEX IF NOT EXISTS decisions_time ON decisions(ts, variant, status, reward)",
    "CREATE INDEX IF NOT EXISTS decisions_outcome ON decisions(variant, status, reward, user_id)",
    "CREATE INDEX IF NOT EXISTS rewards_time ON rewards(ts, status)",
)
MAX_LIVE_ROWS = 200_000  # decisions a live view aggregates at most (the newest)


def ensure_indexes(store) -> None:
    """Create the indexes the read-side views need (once; a no-op when they exist)."""
    for sql in INDEXES:
        store.db.execute(sql)


def find_users(store, prefix: str, limit: int = 20) -> list[str]:
    """Up to ``limit`` user ids in the event log starting with ``prefix`` (an index range)."""
    hi = prefix + "\U0010ffff"
    rows = store.db.execute(
        "SELECT DISTINCT user_id FROM events WHERE user_id >= ? AND user_id < ? "
        "ORDER BY user_id LIMIT ?", (prefix, hi, int(limit)))
    return [r[0] for r in rows]


_DECISION_COLS = ("decision_id, user_id, ts, variant, policy, policy_version, candidate_ids, "
                  "probabilities, chosen, ranking, context, status, reward")


def _decoded(row: tuple) -> dict:
    """A decision row (of :data:`_DECISION_COLS`) as JSON-ready fields."""
    (did, uid, ts, variant, policy, version, ids, probs, chosen, ranking, ctx, status,
     reward) = row
    ids = json.loads(ids)
    p = np.frombuffer(probs, dtype=np.float64)[:len(ids)]
    return {"decision_id": did, "user_id": uid, "ts": ts, "variant": variant, "policy": policy,
            "policy_version": version, "status": status, "reward": reward,
            "candidates": [{"id": i, "probability": float(q)} for i, q in zip(ids, p, strict=True)],
            "chosen": ids[chosen], "ranking": json.loads(ranking),
            "context": None if ctx is None else json.loads(ctx)}


def user_decisions(store, user_id: str, limit: int = 20) -> list[dict]:
    """The user's newest ``limit`` decisions, newest first (index ``decisions_user``)."""
    rows = store.db.execute(
        f"SELECT {_DECISION_COLS} FROM decisions WHERE user_id = ? ORDER BY ts DESC LIMIT ?",
        (user_id, int(limit)))
    return [_decoded(r) for r in rows]


def decision(store, decision_id: str) -> tuple[dict, np.ndarray] | None:
    """A logged decision and its candidates' features ``phi`` (K, D); None when unknown."""
    row = store.db.execute(f"SELECT {_DECISION_COLS}, phi, n_features FROM decisions "
                           "WHERE decision_id = ?", (decision_id,)).fetchone()
    if row is None:
        return None
    return _decoded(row[:-2]), np.frombuffer(row[-2], np.float32).reshape(-1, row[-1]).astype(float)


def interest_history(store, event_types, profile, user_id: str, points: int = 24,
                     top: int = 6, limit: int = 5000, windows=()) -> dict:
    """How the user's topic and tag interests grew and decayed over event time, as the
    profile decays them (``profile``: its :class:`~engine.profile.ProfileConfig`).

    From the user's newest ``limit`` logged events: at ``points`` evenly spaced times ``T``,
    each key's ``sum_i w_i / k_i * 2 ** (-(tau(T) - tau(t_i)) / half_life)`` over the events
    up to ``T`` (``k_i`` the event's topics and tags; ``tau`` event time with the user's
    drift ``windows``, ``[start, end]`` pairs as the profile keeps them, counted
    ``drift_fast_factor`` times), for the ``top`` keys of the last point.
    """
    rows = store.db.execute(
        "SELECT type, ts, value, extra FROM events WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
        (user_id, int(limit))).fetchall()
    if not rows:
        return {"times": [], "series": {}}
    rows.sort(key=lambda r: r[1])
    ts = np.array([r[1] for r in rows])
    keys: dict[str, np.ndarray] = {}
    for i, (type_, _, value, extra) in enumerate(rows):
        topics, tags, _, _ = decode_extra(extra)
        if not (topics or tags) or not event_types.known(type_):
            continue
        share = event_types.weight(type_, value) / (len(topics) + len(tags))
        for key in [f"topic:{t}" for t in topics] + [f"tag:{t}" for t in tags]:
            keys.setdefault(key, np.zeros(len(rows)))[i] += share
    times = np.linspace(ts[0], ts[-1], points) if ts[-1] > ts[0] else ts[-1:]
    # decay[p, i]: weight at time p of event i (0 for events after p)
    warp = _warped(times, windows, profile.drift_fast_factor)[:, None] \
        - _warped(ts, windows, profile.drift_fast_factor)[None, :]
    decay = np.where(times[:, None] >= ts[None, :],
                     np.exp2(-np.maximum(warp, 0) / profile.half_life), 0.0)
    series = {k: decay @ w for k, w in keys.items()}
    best = sorted(series, key=lambda k: -abs(series[k][-1]))[:top]
    return {"times": times.tolist(), "series": {k: series[k].round(6).tolist() for k in best}}


def _warped(t: np.ndarray, windows, factor: float) -> np.ndarray:
    """Event times ``t`` with the time inside drift ``windows`` counted ``factor`` times
    (the profile's decay clock, :meth:`engine.profile.Profile._warp`)."""
    extra = np.zeros_like(t)
    for start, end in windows:
        extra += np.clip(np.minimum(t, end) - start, 0.0, None)
    return t + extra * (factor - 1.0)


def live(store, minutes: int = 60) -> dict:
    """Per minute over the last ``minutes`` before the newest decision: decisions, learned
    rewards and their mean per variant, and reward reports per join status; plus the
    all-time reward reports per status. Minutes are Unix minutes (``ts // 60 * 60``)."""
    db = store.db
    newest = db.execute("SELECT MAX(ts) FROM decisions").fetchone()[0]
    since = -math.inf if newest is None else (newest // 60 - minutes + 1) * 60
    cap = db.execute("SELECT ts FROM decisions ORDER BY ts DESC LIMIT 1 OFFSET ?",
                     (MAX_LIVE_ROWS,)).fetchone()
    since = since if cap is None else max(since, (cap[0] // 60 + 1) * 60)  # whole minutes
    decisions = [
        {"minute": m * 60.0, "variant": v, "decisions": n, "learned": k,
         "mean_reward": None if mean is None else round(mean, 6)}
        for m, v, n, k, mean in db.execute(
            "SELECT CAST(ts / 60 AS INTEGER) AS m, variant, COUNT(*), "
            f"SUM(status IN {LEARNED}), AVG(CASE WHEN status IN {LEARNED} THEN reward END) "
            "FROM decisions WHERE ts >= ? GROUP BY m, variant ORDER BY m, variant", (since,))]
    rewards = [{"minute": m * 60.0, "status": s, "count": n} for m, s, n in db.execute(
        "SELECT CAST(ts / 60 AS INTEGER) AS m, status, COUNT(*) FROM rewards WHERE ts >= ? "
        "GROUP BY m, status ORDER BY m, status", (since,))]
    totals = dict(db.execute("SELECT status, COUNT(*) FROM rewards GROUP BY status"))
    return {"decisions": decisions, "rewards": rewards, "reward_totals": totals}


def decision_counts(store) -> dict[str, int]:
    """Decisions logged per variant."""
    return dict(store.db.execute("SELECT variant, COUNT(*) FROM decisions GROUP BY variant"))


def report_history(store, weights: dict[str, float], points: int = 20) -> list[dict]:
    """The A/B report of the variants of ``weights`` (the first the control) as it read at
    ``points`` evenly spaced decision times: from the learned rewards of decisions made
    until then, the always-valid p-value and confidence sequence of each treatment, chained
    as a live report is (running minimum and intersection). One indexed aggregation per
    time slice; squared deviations from the slice sums (``sum x^2 - n mean^2``, plenty for
    a plot)."""
    names = list(weights)
    db = store.db
    t0, t1 = db.execute("SELECT MIN(ts), MAX(ts) FROM decisions").fetchone()
    if len(names) < 2 or t0 is None:
        return []
    width = (t1 - t0) / points or 1.0
    sums = np.zeros((points, len(names), 3))  # per slice and variant: n, sum, sum of squares
    for b, variant, n, total, squares in db.execute(
            "SELECT MIN(CAST((ts - ?) / ? AS INTEGER), ?), variant, COUNT(*), TOTAL(reward), "
            f"TOTAL(reward * reward) FROM decisions WHERE status IN {LEARNED} "
            "GROUP BY 1, variant", (t0, width, points - 1)):
        if variant in names:
            sums[b, names.index(variant)] = n, total, squares
    out, previous = [], None
    for b, (n, total, squares) in enumerate(np.cumsum(sums, axis=0).transpose(0, 2, 1)):
        mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
        m2 = np.maximum(squares - n * mean ** 2, 0.0)
        stats = {name: VariantStats.from_dict({"n": int(n[k]), "mean": float(mean[k]),
                                               "m2": float(m2[k])})
                 for k, name in enumerate(names)}
        previous = ab_report(stats, weights, names[0], previous=previous)
        out.append({"ts": t0 + (b + 1) * width, "rewards": int(n.sum()), "comparisons": {
            k: {"p_value": c["sequential"]["p_value"], "lift": c.get("lift"),
                "diff": c.get("diff"),
                "confidence_sequence": c["sequential"]["confidence_sequence"]}
            for k, c in previous["comparisons"].items()}})
    return out
