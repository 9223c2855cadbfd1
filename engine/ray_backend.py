"""The Ray backend: each :class:`~engine.shard.ProfileShard` runs in an actor.

The driver keeps the durable store; actors hold only in-memory state, and get one batch per
engine call. Ray restarts an actor that dies (``max_restarts=-1``); its first call then fails,
and the backend restores it from the shard's snapshot plus the tail of the event log and
re-sends the batch (re-sent events carry their log seqs, so none is applied twice).
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

    def restore(self, blob: bytes | None) -> int:
        if blob is not None:
            self.shard.restore(blob)
        self.ready = True
        return self.shard.last_seq

    def call(self, method: str, *args):
        """``shard.<method>(*args)`` once restored; ``"snapshot"`` gives ``(last seq, blob)``
        and ``"n_profiles"`` the number of profiles, as the inline backend's do."""
        if not self.ready:
            raise ShardNotReady(f"shard {self.shard.shard_id} restarted and awaits restore")
        if method == "snapshot":
            return self.shard.last_seq, self.shard.snapshot()
        if method == "n_profiles":
            return len(self.shard)
        return getattr(self.shard, method)(*args)

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
    """

    #: Seconds a call is retried while a dead actor is restarted.
    RETRY_SECONDS = 60.0

    def __init__(self, n_shards: int, profile_config: ProfileConfig, event_types: EventTypes,
                 seed: int = 0, address: str | None = None):
        import ray

        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started_ray = True
        remote = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)(ShardActor)  # cores shared
        self.n_shards = n_shards
        self.actors = [remote.remote(i, profile_config, event_types, seed) for i in range(n_shards)]
        self.restarts = 0
        #: Set by the engine: shard -> (snapshot blob or None, iterable of (events, seqs)).
        self.recovery: Callable[[int], tuple[bytes | None, Iterable]] | None = None

    def _call(self, calls: dict[int, tuple[str, tuple]]) -> dict[int, object]:
        """Run one method call per shard in parallel; revive and retry shards that failed."""
        futures = {s: self.actors[s].call.remote(m, *a) for s, (m, a) in calls.items()}
        return {s: self._get(s, fut, *calls[s]) for s, fut in futures.items()}

    def _get(self, shard: int, future, method: str, args: tuple) -> object:
        """``future``'s result; where the actor was lost, revive it and call again until
        ``retry_seconds`` have passed. An error the shard raised is raised as it is."""
        ray = self._ray
        deadline = None
        while True:
            try:
                if deadline is not None:
                    self._revive(shard)
                    future = self.actors[shard].call.remote(method, *args)
                return ray.get(future)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                if isinstance(err, ray.exceptions.RayTaskError) and not isinstance(
                        err.as_instanceof_cause(), ShardNotReady):
                    raise err.as_instanceof_cause() from None
                if deadline is None:
                    deadline = time.monotonic() + self.RETRY_SECONDS
                elif time.monotonic() > deadline:
                    raise LoopwiseError(f"shard {shard}: actor did not come back within "
                                        f"{self.RETRY_SECONDS} s") from err
                else:
                    time.sleep(0.2)

    def _revive(self, shard: int) -> None:
        if self.recovery is None:
            raise LoopwiseError(f"shard {shard} restarted but the backend has no recovery source")
        ray = self._ray
        blob, tail = self.recovery(shard)
        actor = self.actors[shard]
        ray.get(actor.restore.remote(blob))
        for events, seqs in tail:
            ray.get(actor.call.remote("apply", events, seqs))
        self.restarts += 1

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
