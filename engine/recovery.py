"""Recovery: bring an engine back to where its data directory left it (:func:`save` writes
what :func:`recover` reads). Shards come back from their snapshots plus the tail of the event
log; pending decisions wait again; rewards learned after each variant's last saved policy are
learned again; sessions come back as saved plus the tail of the logs (:func:`replay_sessions`);
the sampling generator resumes from its saved state."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np

from engine.decide import slot_decisions_of, slot_id
from engine.decisions import Pending


def shard_state(store, shard: int) -> tuple[bytes | None, Iterator]:
    """A shard's latest snapshot (or None) and the log events after it, in batches
    (``(events, seqs)``). The Ray backend calls it to restart a lost actor."""
    seq, blob = store.load_snapshot(shard) or (0, None)
    return blob, store.iter_events(shard, seq)


#: The columns of :meth:`Store.pending_decisions` rows, in order.
PENDING_COLUMNS = ("decision_id", "user_id", "deadline", "chosen", "variant", "phi",
                   "n_features", "chosen_meta")


def pending_of(row: dict) -> Pending:
    """The :class:`~engine.decisions.Pending` join of a logged decision (a row of the
    ``decisions`` table as a mapping: at least :data:`PENDING_COLUMNS`)."""
    phi = np.frombuffer(row["phi"], dtype=np.float32).reshape(-1, row["n_features"])
    item = json.loads(row["chosen_meta"])
    return Pending(row["decision_id"], row["user_id"], row["deadline"], row["variant"],
                   phi[row["chosen"]].astype(float), item["p"], item["id"],
                   tuple(item["topics"]), tuple(item["tags"]), item.get("shadow"))


def recover(store, backend, n_shards: int, waiting, learners: dict,
            rng: np.random.Generator, sessions=None) -> None:
    """Restore every shard, reload pending decisions into ``waiting``, re-learn the rewards
    after each learner's ``learned_seq`` (those of variants learning transitions through
    the replay of their ``sessions``), and restore ``rng``'s state."""
    for shard in range(n_shards):
        blob, tail = shard_state(store, shard)
        backend.restore(shard, blob)
        for events, seqs in tail:
            backend.apply({shard: (events, seqs)})
    for values in store.pending_decisions():
        pending = pending_of(dict(zip(PENDING_COLUMNS, values, strict=True)))
        did = pending.decision_id
        if "slots" in json.loads(values[-1]) and not store.has_decision(slot_id(did, 1)):
            pending.slots = slot_decisions_of(store.decision(did))  # not yet awaited
        waiting.add(pending)
    replayed = sessions is not None and replay_sessions(store, sessions)
    for name, learner in learners.items():
        if replayed and name in sessions.variants:
            continue
        for seq, value, chosen, phi, d, probs in store.learnable_rewards(name, learner.learned_seq):
            x = np.frombuffer(phi, dtype=np.float32).reshape(-1, d)[chosen].astype(float)
            p = float(np.frombuffer(probs, dtype=np.float64)[chosen])
            learner.add(x, value, p, seq)
        learner.flush()
    rng_state = store.get_meta("rng_state")
    if rng_state is not None:
        rng.bit_generator.state = json.loads(rng_state)


def save_shard(store, backend, shard: int, sessions=None, forgotten: str | None = None
               ) -> None:
    """Snapshot one shard's profiles (recovery replays only the events after it); after
    :meth:`Engine.forget <engine.engine.Engine.forget>`, with the ``forgotten`` user's
    sessions dropped from memory and from their saved state too."""
    seq, blob = backend.snapshot(shard)
    store.save_snapshot(shard, seq, blob)
    if sessions is None or forgotten is None:
        return
    sessions.drop_user(forgotten)
    rows_deleted(store, forgotten)


def rows_deleted(store, forgotten: str | None = None) -> None:
    """Decision rows were deleted (an erasure, retention): the saved sessions' replay starts
    at the last decision row left, since SQLite gives a deleted newest row's rowid again;
    a ``forgotten`` user's steps and trace leave the saved state (the same log positions:
    the policies were not saved)."""
    raw = store.get_meta("sessions")
    if raw is None:
        return
    state = json.loads(raw)
    if forgotten is not None:
        state["steps"] = [s for s in state["steps"] if s[1] != forgotten]
        state["traces"] = state["traces"] and [t for t in state["traces"] if t[0] != forgotten]
    state["marks"][2] = min(state["marks"][2], _last_decision(store))
    store.set_meta("sessions", json.dumps(state))


def save(store, backend, n_shards: int, learners: dict, rng: np.random.Generator,
         sessions=None) -> None:
    """Snapshot every shard, save every learner's policy (after its pending records), the
    open sessions as of the same point and the generator's state."""
    for shard in range(n_shards):
        save_shard(store, backend, shard)
    for name, learner in learners.items():
        learner.flush()
        store.save_policy(name, learner.learned_seq, learner.version, learner.state())
    if sessions is not None:
        # where in the logs the state stands: the next event seq, the first reward seq not
        # learned yet, the last decision's rowid (replay_sessions starts after them)
        state = sessions.state()
        state["marks"] = [store.marks()[0], sessions.reward_mark, _last_decision(store)]
        store.set_meta("sessions", json.dumps(state))
    store.set_meta("rng_state", json.dumps(rng.bit_generator.state))


def _last_decision(store) -> int:
    return store.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM decisions").fetchone()[0]


def replay_sessions(store, sessions) -> bool:
    """Bring ``sessions`` (:class:`~engine.session.Sessions`) back to where the logs leave
    them: the state :func:`save` kept, then the decisions, learned rewards and
    ``session_end`` events logged after it, met in the engine's order (a decision's
    ``marks`` say which rewards and events came before it; between two decisions, rewards
    and events by time, rewards first), so that traces and transitions come out as they
    would have without the restart. Transitions completed on the way go to their learners.
    False where no state was kept (a data directory from before sessions were saved)."""
    raw = store.get_meta("sessions")
    if raw is None:
        sessions.reward_mark = store.marks()[1]
        return False
    state = json.loads(raw)
    events0, rewards0, decisions0 = state["marks"]
    db = store.db

    def logged(did: str):
        row = db.execute("SELECT phi, n_features, chosen, chosen_meta FROM decisions "
                         "WHERE decision_id = ?", (did,)).fetchone()
        return None if row is None else (np.frombuffer(row[0], np.float32).reshape(-1, row[1]),
                                         row[2], json.loads(row[3])["p"])

    sessions.restore(state, logged)
    rewards = db.execute(
        "SELECT r.seq, r.ts, r.status, r.value, decision_id, d.user_id, d.variant, d.chosen, "
        "d.phi, d.n_features FROM rewards r JOIN decisions d USING (decision_id) "
        "WHERE r.seq >= ? AND r.status IN ('joined', 'default') ORDER BY r.seq",
        (rewards0,)).fetchall()
    ends = db.execute("SELECT seq, ts, user_id FROM events WHERE seq >= ? AND "
                      "type = 'session_end' ORDER BY seq", (events0,)).fetchall()
    at = [0, 0]  # the next reward, the next end

    def until(event_mark: float, reward_mark: float) -> None:
        """Learn the rewards and end the sessions that came before these marks."""
        while True:
            r = rewards[at[0]] if at[0] < len(rewards) and rewards[at[0]][0] < reward_mark \
                else None
            e = ends[at[1]] if at[1] < len(ends) and ends[at[1]][0] < event_mark else None
            if r is None and e is None:
                return
            if r is not None and (e is None or r[1] <= e[1]):
                at[0] += 1
                seq, ts, status, value, did, uid, variant, chosen, phi, d = r
                if status == "joined":  # (a default is learned before the call's expiry)
                    sessions.expire(ts)
                x = np.frombuffer(phi, np.float32).reshape(-1, d)[chosen]
                sessions.learned(Pending(did, uid, ts, variant, x, 1.0, ""), value, seq)
            else:
                at[1] += 1
                sessions.end(e[2])

    for did, uid, ts, variant, chosen, phi, d, meta in db.execute(
            "SELECT decision_id, user_id, ts, variant, chosen, phi, n_features, chosen_meta "
            "FROM decisions WHERE rowid > ? ORDER BY rowid", (decisions0,)):
        meta = json.loads(meta)
        if "marks" not in meta:  # a slate's later slot: logged at its reward, not decided
            continue
        until(*meta["marks"])
        sessions.expire(ts)
        cands = np.frombuffer(phi, np.float32).reshape(-1, d)
        if sessions.traces is not None:
            sessions.traces.read(uid, ts)
        if variant in sessions.variants:
            sessions.decided(uid, variant, did, cands[chosen], meta["p"], cands, ts)
    until(math.inf, math.inf)
    sessions.reward_mark = store.marks()[1]
    return True
