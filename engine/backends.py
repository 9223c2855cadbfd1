"""Shard backends: where the shards live, behind one interface. Each method makes at most one
call per shard, so the Ray backend (:mod:`engine.ray_backend`) sends one batch per actor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.events import Event, EventTypes
from engine.profile import ProfileConfig
from engine.shard import Candidate, ProfileShard


class InlineBackend:
    """All shards as plain objects in this process.

    Examples
    --------
    >>> b = InlineBackend(2, ProfileConfig(), EventTypes(), seed=0)
    >>> b.n_shards, b.n_profiles()
    (2, 0)
    """

    def __init__(self, n_shards: int, profile_config: ProfileConfig, event_types: EventTypes,
                 seed: int = 0):
        self.n_shards = n_shards
        self.shards = [ProfileShard(i, profile_config, event_types, seed) for i in range(n_shards)]

    def apply(self, batches: dict[int, tuple[list[Event], list[int]]]) -> int:
        applied = 0
        for s, (evs, seqs) in batches.items():
            applied += self.shards[s].apply(evs, seqs)
        return applied

    def features(self, requests: dict[int, list[tuple[str, Sequence[Candidate]]]], now: float
                 ) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
        out = {}
        for s, reqs in requests.items():
            out[s] = self.shards[s].features(reqs, now)
        return out

    def profile_json(self, shard: int, user_id: str, now: float | None) -> dict | None:
        return self.shards[shard].profile_json(user_id, now)

    def forget(self, shard: int, user_id: str, items: Sequence[str] = ()) -> bool:
        return self.shards[shard].forget(user_id, items)

    def snapshot(self, shard: int) -> tuple[int, bytes]:
        s = self.shards[shard]
        return s.last_seq, s.snapshot()

    def restore(self, shard: int, blob: bytes | None) -> None:
        if blob is not None:
            self.shards[shard].restore(blob)

    def n_profiles(self) -> int:
        return sum(len(s) for s in self.shards)

    def close(self) -> None:
        pass


def open_backend(config, event_types: EventTypes, store):
    """The shards ``config`` asks for: inline, or Ray actors that restart from ``store``
    (their snapshot plus the tail of their event log) when lost."""
    if config.backend == "inline":
        return InlineBackend(config.shards, config.profile, event_types, config.seed)
    from functools import partial

    from engine.ray_backend import RayBackend
    from engine.recovery import shard_state

    backend = RayBackend(config.shards, config.profile, event_types, config.seed,
                         address=config.ray_address)
    backend.recovery = partial(shard_state, store)
    return backend
