"""A learner actor: trains the policy in its own process (on a GPU when the cluster has one)
and publishes new versions to the deciders in the driver."""

from __future__ import annotations

import pickle

import numpy as np

from engine.learner import stack_transitions


class LearnerActor:
    """Actor body: owns the master copy of a policy and learns from batches of joined records."""

    def __init__(self, policy_blob: bytes):
        self.policy = pickle.loads(policy_blob)

    def update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> bytes:
        self.policy.update(phi, rewards, propensities)
        return pickle.dumps(self.policy, protocol=pickle.HIGHEST_PROTOCOL)

    def learn_transitions(self, *arrays: np.ndarray) -> bytes:
        """Session transitions (see :func:`engine.learner.stack_transitions`)."""
        self.policy.learn_transitions(*arrays)
        return pickle.dumps(self.policy, protocol=pickle.HIGHEST_PROTOCOL)

    def device(self) -> str:
        return str(getattr(self.policy, "device", "cpu"))


class RayLearner:
    """Drop-in for :class:`engine.learner.Learner` that trains in a Ray actor.

    The decider (the engine) keeps a copy of the policy for ``act``; each flushed mini-batch is
    sent to the actor in one call, and the updated policy comes back as the new version. With
    ``asynchronous=True`` the engine keeps deciding with the previous version while the actor
    trains, and swaps in the new one when it is ready (each decision logs the version it used).

    Parameters
    ----------
    policy
        The policy to train (pickled into the actor).
    batch_size
        Joined records per update call.
    num_gpus
        GPUs the actor reserves (e.g. 1 to train on a GPU node).
    asynchronous
        Do not wait for updates to finish before the next decision.
    """

    def __init__(self, policy, batch_size: int = 1, num_gpus: float = 0.0,
                 asynchronous: bool = False):
        import ray

        self._ray = ray
        self.policy = policy
        self.batch_size = batch_size
        self.asynchronous = asynchronous
        self.learned_seq = 0
        remote = ray.remote(num_gpus=num_gpus, num_cpus=0, max_restarts=0)(LearnerActor)
        self._actor = remote.remote(pickle.dumps(policy, protocol=pickle.HIGHEST_PROTOCOL))
        self._inflight = None  # (future, max seq)
        self._buf: list[tuple[np.ndarray, float, float, int]] = []
        self._trans: list[tuple] = []  # session transitions, as engine.learner.Learner's

    @property
    def version(self) -> int:
        self._poll(block=False)
        return self.policy.version

    @property
    def pending(self) -> int:
        return len(self._buf) + len(self._trans)

    def add(self, phi: np.ndarray, reward: float, propensity: float, reward_seq: int) -> None:
        self._buf.append((phi, reward, propensity, reward_seq))
        if len(self._buf) >= self.batch_size:
            self.flush(block=not self.asynchronous)

    def add_transition(self, phi: np.ndarray, reward: float, propensity: float,
                       next_candidates: np.ndarray | None, done: bool, reward_seq: int) -> None:
        """One session transition (as :meth:`engine.learner.Learner.add_transition`)."""
        self._trans.append((phi, reward, propensity, next_candidates, done, reward_seq))
        if len(self._trans) >= self.batch_size:
            self.flush(block=not self.asynchronous)

    def _poll(self, block: bool) -> None:
        if self._inflight is None:
            return
        future, seq = self._inflight
        ready, _ = self._ray.wait([future], timeout=None if block else 0)
        if ready:
            new = pickle.loads(self._ray.get(future))
            # exploration draws belong to the decider: keep its generator, not the actor's copy
            if hasattr(self.policy, "_rng"):
                new._rng = self.policy._rng
            self.policy = new
            self.learned_seq = max(self.learned_seq, seq)
            self._inflight = None

    def flush(self, block: bool = True) -> None:
        self._poll(block=True)  # one update in flight at a time keeps versions in order
        if self._buf:
            phi = np.stack([b[0] for b in self._buf])
            rewards = np.array([b[1] for b in self._buf])
            props = np.array([b[2] for b in self._buf])
            seq = max(b[3] for b in self._buf)
            self._buf = []
            self._inflight = (self._actor.update.remote(phi, rewards, props), seq)
        if self._trans:
            self._poll(block=True)
            trans, self._trans = self._trans, []
            self._inflight = (self._actor.learn_transitions.remote(*stack_transitions(trans)),
                              max(t[5] for t in trans))
        if block:
            self._poll(block=True)

    def state(self) -> bytes:
        return pickle.dumps(self.policy, protocol=pickle.HIGHEST_PROTOCOL)

    def device(self) -> str:
        return self._ray.get(self._actor.device.remote())

    def close(self) -> None:
        self.flush(block=True)
        self._ray.kill(self._actor)
