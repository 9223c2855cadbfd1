"""The Ray backend: each :class:`~engine.shard.ProfileShard` runs in an actor.

The driver (the :class:`~engine.engine.Engine`) keeps the durable store; actors hold only
in-memory state. Work travels in batches: one remote call per shard per engine call. An actor
that dies is restarted by Ray (``max_restarts=-1``); its first call afterwards fails, the
backend restores it from the shard's snapshot plus the tail of the event log (read by the
driver from its store) and re-sends the batch. Re-sent events carry the same log sequence
numbers, so applying them twice is impossible.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from engine.errors import LoopwiseError
from engine.events import Event, EventTypes
from engine.profile import ProfileConfig
from engine.shard import Candidate, ProfileShard


class ShardNotReady(LoopwiseError):
    """A shard actor (re)started and has not been restored yet."""


class ShardActor:
    """Actor body: a ProfileShard that refuses work until it has been restored."""

    def __init__(self, shard_id: int, profile_config: ProfileConfig, event_types: EventTypes,
                 seed: int):
        self.shard = ProfileShard(shard_id, profile_config, event_types, seed)
        self.ready = False

    def _check(self) -> ProfileShard:
        if not self.ready:
            raise ShardNotReady(f"shard {self.shard.shard_id} restarted and awaits restore")
        return self.shard

    def restore(self, blob: bytes | None) -> int:
        if blob is not None:
            self.shard.restore(blob)
        self.ready = True
        return self.shard.last_seq

    def apply(self, events: list[Event], seqs: list[int]) -> int:
        return self._check().apply(events, seqs)

    def features(self, requests, now: float):
        return self._check().features(requests, now)

    def profile_json(self, user_id: str, now: float | None):
        return self._check().profile_json(user_id, now)

    def forget(self, user_id: str, items=()) -> bool:
        return self._check().forget(user_id, items)

    def snapshot(self) -> tuple[int, bytes]:
        shard = self._check()
        return shard.last_seq, shard.snapshot()

    def last_seq(self) -> int:
        return self._check().last_seq

    def n_profiles(self) -> int:
        return len(self._check())

    def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """Shards as Ray actors (local Ray, or an existing cluster by ``address``).

    Parameters
    ----------
    n_shards, profile_config, event_types, seed
        As for :class:`~engine.backends.InlineBackend`.
    address
        Address of an existing Ray cluster (``"auto"`` or ``"ray://host:10001"``); ``None``
        starts a local Ray unless one is already running in this process.
    actor_cpus
        CPUs each shard actor reserves (fractions allowed; 0 lets actors share cores).
    retry_seconds
        How long to keep retrying a call while a dead actor is restarted.
    """

    def __init__(self, n_shards: int, profile_config: ProfileConfig, event_types: EventTypes,
                 seed: int = 0, address: str | None = None, actor_cpus: float = 0.0,
                 retry_seconds: float = 60.0):
        import ray

        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started_ray = True
        remote = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=actor_cpus)(ShardActor)
        self.n_shards = n_shards
        self.actors = [remote.remote(i, profile_config, event_types, seed) for i in range(n_shards)]
        self.retry_seconds = retry_seconds
        self.restarts = 0
        #: Set by the engine: shard -> (snapshot blob or None, iterable of (events, seqs)).
        self.recovery: Callable[[int], tuple[bytes | None, Iterable]] | None = None

    # ---- calls with recovery -----------------------------------------------------------
    def _call(self, calls: dict[int, tuple[str, tuple]]) -> dict[int, object]:
        """Run one method call per shard in parallel; revive and retry shards that failed."""
        ray = self._ray
        futures = {s: getattr(self.actors[s], m).remote(*a) for s, (m, a) in calls.items()}
        out: dict[int, object] = {}
        for s, fut in futures.items():
            try:
                out[s] = ray.get(fut)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                if isinstance(err, ray.exceptions.RayTaskError) and not isinstance(
                        err.as_instanceof_cause(), ShardNotReady):
                    raise err.as_instanceof_cause() from None
                out[s] = self._revive_and_retry(s, *calls[s])
        return out

    def _revive_and_retry(self, shard: int, method: str, args: tuple) -> object:
        ray = self._ray
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                self._revive(shard)
                return ray.get(getattr(self.actors[shard], method).remote(*args))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                if isinstance(err, ray.exceptions.RayTaskError) and not isinstance(
                        err.as_instanceof_cause(), ShardNotReady):
                    raise err.as_instanceof_cause() from None
                if time.monotonic() > deadline:
                    raise LoopwiseError(f"shard {shard}: actor did not come back within "
                                        f"{self.retry_seconds} s") from err
                time.sleep(0.2)

    def _revive(self, shard: int) -> None:
        if self.recovery is None:
            raise LoopwiseError(f"shard {shard} restarted but the backend has no recovery source")
        ray = self._ray
        blob, tail = self.recovery(shard)
        actor = self.actors[shard]
        ray.get(actor.restore.remote(blob))
        for events, seqs in tail:
            ray.get(actor.apply.remote(events, seqs))
        self.restarts += 1

    # ---- backend interface -------------------------------------------------------------
    def apply(self, batches: dict[int, tuple[list[Event], list[int]]]) -> int:
        res = self._call({s: ("apply", (evs, seqs)) for s, (evs, seqs) in batches.items()})
        return sum(res.values())

    def features(self, requests: dict[int, list[tuple[str, Sequence[Candidate]]]], now: float
                 ) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
        return self._call({s: ("features", (reqs, now)) for s, reqs in requests.items()})

    def profile_json(self, shard: int, user_id: str, now: float | None) -> dict | None:
        return self._call({shard: ("profile_json", (user_id, now))})[shard]

    def forget(self, shard: int, user_id: str, items=()) -> bool:
        return self._call({shard: ("forget", (user_id, tuple(items)))})[shard]

    def snapshot(self, shard: int) -> tuple[int, bytes]:
        return self._call({shard: ("snapshot", ())})[shard]

    def restore(self, shard: int, blob: bytes | None) -> None:
        self._ray.get(self.actors[shard].restore.remote(blob))

    def last_seq(self, shard: int) -> int:
        return self._call({shard: ("last_seq", ())})[shard]

    def n_profiles(self) -> int:
        return sum(self._call({s: ("n_profiles", ()) for s in range(self.n_shards)}).values())

    def actor_pid(self, shard: int) -> int:
        return self._ray.get(self.actors[shard].pid.remote())

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_ray:
            self._ray.shutdown()
