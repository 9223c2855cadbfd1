"""Learners: each variant's policy, built from the config, and the learner that turns its
joined rewards into policy updates and new policy versions."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ValidationError

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.store import Store


class Learner:
    """Buffers joined records for one variant's policy and updates it in mini-batches.

    Parameters
    ----------
    policy
        A :class:`policies.Policy` (anything with ``update(phi, rewards, propensities)``
        and ``version``).
    batch_size
        Records per update; 1 learns from every reward at once.

    Examples
    --------
    >>> from policies import make
    >>> learner = Learner(make("uniform", n_features=3, seed=0), batch_size=2)
    >>> learner.add(np.ones(3), 1.0, 0.5, reward_seq=1)
    >>> learner.version, learner.pending
    (0, 1)
    >>> learner.add(np.ones(3), 0.0, 0.5, reward_seq=2)
    >>> learner.version, learner.learned_seq
    (1, 2)
    """

    def __init__(self, policy, batch_size: int = 1):
        self.policy = policy
        self.batch_size = batch_size
        self.learned_seq = 0
        self._records: list[tuple] = []  # (phi, reward, propensity, seq)
        self._trans: list[tuple] = []  # (phi, reward, propensity, next candidates, done, seq)

    @property
    def version(self) -> int:
        return self.policy.version

    @property
    def pending(self) -> int:
        return len(self._records) + len(self._trans)

    def add(self, phi: np.ndarray, reward: float, propensity: float, reward_seq: int) -> None:
        if self.batch_size == 1 and not self._records:
            learn_one = getattr(self.policy, "learn_one", None)
            if learn_one is not None:  # one record straight to the policy, no arrays built
                learn_one(phi, reward, propensity)
                self.learned_seq = max(self.learned_seq, reward_seq)
                return
        self._records.append((phi, reward, propensity, reward_seq))
        if len(self._records) >= self.batch_size:
            self.flush()

    def add_transition(self, phi: np.ndarray, reward: float, propensity: float,
                       next_candidates: np.ndarray | None, done: bool, reward_seq: int) -> None:
        """One session transition (see :mod:`engine.session`): the chosen features (D,),
        its reward, the next decision's candidates (K, D) or None where ``done``."""
        self._trans.append((phi, reward, propensity, next_candidates, done, reward_seq))
        if len(self._trans) >= self.batch_size:
            self._flush_transitions()

    def _flush_transitions(self) -> None:
        """Hand the buffered transitions to ``policy.learn_transitions`` in one call."""
        trans, self._trans = self._trans, []
        self.policy.learn_transitions(*stack_transitions(trans))
        self.learned_seq = max(self.learned_seq, max(t[5] for t in trans))

    def flush(self) -> None:
        if self._trans:
            self._flush_transitions()
        if not self._records:
            return
        phi, rewards, props, seqs = zip(*self._records, strict=True)
        self.policy.update(phi[0][None] if len(phi) == 1 else np.stack(phi),  # (N, D)
                           np.array(rewards, dtype=float), np.array(props, dtype=float))
        self.learned_seq = max(self.learned_seq, *seqs)
        self._records = []

    def state(self) -> bytes:
        """The policy as of the last flushed record (call :meth:`flush` first to include all)."""
        return pickle.dumps(self.policy, protocol=pickle.HIGHEST_PROTOCOL)


def stack_transitions(trans: list[tuple]) -> tuple[np.ndarray, ...]:
    """``learn_transitions``'s arguments from buffered ``(phi, reward, propensity, next
    candidates or None, done, seq)``: the next candidates padded to the longest with a
    mask, zeros where done."""
    d = trans[0][0].shape[-1]
    k = max([1] + [len(t[3]) for t in trans if t[3] is not None])
    next_phi = np.zeros((len(trans), k, d))
    mask = np.zeros((len(trans), k), bool)
    for i, t in enumerate(trans):
        if t[3] is not None:
            next_phi[i, :len(t[3])] = t[3]
            mask[i, :len(t[3])] = True
    return (np.stack([t[0] for t in trans]), np.array([t[1] for t in trans], dtype=float),
            np.array([t[2] for t in trans], dtype=float), next_phi, mask,
            np.array([t[4] for t in trans], dtype=bool))


def make_policies(config: EngineConfig, n_features: int) -> dict[str, tuple[object, str, dict]]:
    """``{variant: (new policy, its name for the store, params)}``; a named policy is seeded
    with the engine's seed + 7919 x the variant's position."""
    from policies import make

    out = {}
    single = config.variants is None  # named as the settings were given
    for i, (name, spec) in enumerate(config.variant_specs().items()):
        where = "policy" if single else f"variants.{name}.policy"
        pol, params = spec["policy"], spec["params"]
        if isinstance(pol, str):
            try:
                obj = make(pol, n_features=n_features, seed=config.seed + 7919 * i, **params)
            except ValidationError as err:  # names "policy" or the parameter
                field = where if err.field == "policy" else \
                    f"{'policy_params' if single else f'variants.{name}.params'}.{err.field}"
                raise ValidationError(field, err.reason, err.value) from None
            out[name] = (obj, pol, params)
        else:
            if getattr(pol, "n_features", n_features) != n_features:
                raise ValidationError(where, f"has n_features={pol.n_features} but "
                                      f"the featurizer makes {n_features}", pol)
            out[name] = (pol, type(pol).__name__, params)
    return out


def open_learners(config: EngineConfig, policies: dict[str, tuple[object, str, dict]],
                  store: Store) -> dict[str, Learner]:
    """A learner per variant, each starting from the variant's saved policy where the store
    has one (else the new policy), local or in a Ray actor as ``config.learner`` says."""
    kind = config.learner
    if kind == "auto":
        kind = "ray" if config.backend == "ray" else "local"
    learners: dict[str, Learner] = {}
    for name, (policy, _, _) in policies.items():
        saved = store.load_policy(name)
        pol = pickle.loads(saved[2]) if saved else policy
        if kind == "ray":
            from engine.ray_learner import RayLearner
            lrn = RayLearner(pol, config.learn_batch, num_gpus=config.learner_gpus,
                             asynchronous=config.async_learning)
        else:
            lrn = Learner(pol, config.learn_batch)
        lrn.learned_seq = saved[0] if saved else 0
        learners[name] = lrn
    return learners
