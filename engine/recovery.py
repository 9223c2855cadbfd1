"""Recovery: bring an engine back to where its data directory left it (:func:`save` writes
what :func:`recover` reads). Shards come back from their snapshots plus the tail of the event
log; pending decisions wait again; rewards learned after each variant's last saved policy are
learned again; the sampling generator resumes from its saved state."""

from __future__ import annotations

import json
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
            rng: np.random.Generator) -> None:
    """Restore every shard, reload pending decisions into ``waiting``, re-learn the rewards
    after each learner's ``learned_seq`` and restore ``rng``'s state."""
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
    for name, learner in learners.items():
        for seq, value, chosen, phi, d, probs in store.learnable_rewards(name, learner.learned_seq):
            x = np.frombuffer(phi, dtype=np.float32).reshape(-1, d)[chosen].astype(float)
            p = float(np.frombuffer(probs, dtype=np.float64)[chosen])
            learner.add(x, value, p, seq)
        learner.flush()
    rng_state = store.get_meta("rng_state")
    if rng_state is not None:
        rng.bit_generator.state = json.loads(rng_state)


def save_shard(store, backend, shard: int) -> None:
    """Snapshot one shard's profiles (recovery replays only the events after it)."""
    seq, blob = backend.snapshot(shard)
    store.save_snapshot(shard, seq, blob)


def save(store, backend, n_shards: int, learners: dict, rng: np.random.Generator) -> None:
    """Snapshot every shard, save every learner's policy (after its pending records) and
    the generator's state."""
    for shard in range(n_shards):
        save_shard(store, backend, shard)
    for name, learner in learners.items():
        learner.flush()
        store.save_policy(name, learner.learned_seq, learner.version, learner.state())
    store.set_meta("rng_state", json.dumps(rng.bit_generator.state))
