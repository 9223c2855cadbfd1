"""The policy contract: action-dependent features in, honest probabilities out.

A batch of decisions is ``phi`` of shape (B, K, D) (K candidates with D features each) and a
boolean ``mask`` (B, K) of the candidates that exist. :meth:`Policy.act` returns the
probability (B, K) of choosing each candidate; the caller samples, so the propensity of what
was shown is exactly known. :meth:`Policy.update` learns from the chosen candidates'
features (N, D), their rewards (N,) and the propensities (N,) they were chosen with.

Public methods validate and then call private hooks (``_act``, ``_update``) that subclasses
implement, as River does with ``learn_one``/``_learn_one``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np


def check_param(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, integer: bool = False) -> None:
    """Raise ``ValueError`` naming the parameter unless ``value`` is a number in range."""
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name}: must be {kind} (got {value!r})")
    if low is not None and (value < low or (low_open and value <= low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low} (got {value!r})")
    if high is not None and value > high:
        raise ValueError(f"{name}: must be <= {high} (got {value!r})")


class Policy:
    """Base class of every Loopwise policy.

    Subclasses list their constructor parameters in ``_params`` (stored verbatim under the
    same names) and implement ``_act`` and ``_update``; learned state lives in attributes
    named in ``_state`` so that :meth:`state_dict` can save it.

    Parameters
    ----------
    n_features
        D, the number of features per candidate.
    seed
        Seed of the policy's own generator (exploration draws).
    """

    _params: tuple[str, ...] = ("n_features", "seed")
    _state: tuple[str, ...] = ()
    #: Contract checks this class opts out of, by name, with the reason.
    opt_out: dict[str, str] = {}

    def __init__(self, n_features: int, seed: int | None = 0):
        check_param("n_features", n_features, low=1, integer=True)
        if seed is not None:
            check_param("seed", seed, low=0, integer=True)
        self.n_features = int(n_features)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._version = 0

    # ---- public contract -------------------------------------------------------------
    @property
    def version(self) -> int:
        """Number of :meth:`update` calls applied so far."""
        return self._version

    def act(self, phi: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (B, K) of choosing each candidate; 0 on masked ones, rows sum to 1."""
        phi, mask = self._check_batch(phi, mask)
        probs = self._act(phi, mask)
        probs = np.where(mask, probs, 0.0)
        return probs / probs.sum(axis=1, keepdims=True)

    def update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> Policy:
        """Learn from N chosen candidates: features (N, D), rewards (N,), propensities (N,)."""
        phi = np.array(phi, dtype=np.float64)  # copies: never mutate the caller's arrays
        if phi.ndim != 2 or phi.shape[1] != self.n_features:
            raise ValueError(f"phi: must have shape (N, {self.n_features}) (got {phi.shape})")
        n = phi.shape[0]
        rewards = np.array(rewards, dtype=np.float64).reshape(-1)
        propensities = np.array(propensities, dtype=np.float64).reshape(-1)
        if rewards.shape != (n,):
            raise ValueError(f"rewards: must have shape ({n},) (got {rewards.shape})")
        if propensities.shape != (n,):
            raise ValueError(f"propensities: must have shape ({n},) (got {propensities.shape})")
        if not np.isfinite(phi).all():
            raise ValueError("phi: must be finite")
        if not np.isfinite(rewards).all():
            raise ValueError("rewards: must be finite")
        if not ((propensities > 0) & (propensities <= 1)).all():
            raise ValueError(f"propensities: must lie in (0, 1] (got min {propensities.min()}, "
                             f"max {propensities.max()})")
        if n:
            self._update(phi, rewards, propensities)
            self._version += 1
        return self

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self._params}

    def clone(self) -> Policy:
        """A fresh, untrained policy with the same parameters."""
        return type(self)(**self.get_params())

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: parameters, learned state, RNG, version."""
        return {
            "class": type(self).__name__,
            "params": copy.deepcopy(self.get_params()),
            "state": {name: copy.deepcopy(getattr(self, name)) for name in self._state},
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "version": self._version,
        }

    def load_state_dict(self, state: dict) -> Policy:
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state: saved from {state.get('class')!r}, not {type(self).__name__!r}")
        if state["params"].get("n_features") != self.n_features:
            raise ValueError(f"state: n_features is {state['params'].get('n_features')}, "
                             f"this policy has {self.n_features}")
        for name, value in state["state"].items():
            setattr(self, name, copy.deepcopy(value))
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._version = int(state["version"])
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- hooks -----------------------------------------------------------------------
    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        raise NotImplementedError

    # ---- helpers ---------------------------------------------------------------------
    def _check_batch(self, phi, mask) -> tuple[np.ndarray, np.ndarray]:
        phi = np.asarray(phi, dtype=np.float64)
        if phi.ndim != 3 or phi.shape[2] != self.n_features:
            raise ValueError(f"phi: must have shape (B, K, {self.n_features}) (got {phi.shape})")
        b, k, _ = phi.shape
        if b == 0 or k == 0:
            raise ValueError(f"phi: needs at least one decision and one candidate (got {phi.shape})")
        if mask is None:
            mask = np.ones((b, k), dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != (b, k):
                raise ValueError(f"mask: must have shape ({b}, {k}) like phi's first two axes "
                                 f"(got {mask.shape})")
            if mask.dtype != bool:
                raise ValueError(f"mask: must be boolean (got dtype {mask.dtype})")
            if not mask.any(axis=1).all():
                raise ValueError(f"mask: row {int(np.argmin(mask.any(axis=1)))} has no valid "
                                 "candidate")
        if not np.isfinite(phi[mask]).all():
            raise ValueError("phi: must be finite on unmasked candidates")
        return phi, mask


def mix_uniform(probs: np.ndarray, mask: np.ndarray, epsilon: float) -> np.ndarray:
    """``(1 - epsilon) * probs + epsilon * uniform over valid candidates``."""
    uniform = mask / mask.sum(axis=1, keepdims=True)
    return (1.0 - epsilon) * probs + epsilon * uniform


def greedy(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One-hot (ties split evenly) of the best valid score per row."""
    s = np.where(mask, scores, -np.inf)
    best = s >= s.max(axis=1, keepdims=True) - 1e-12
    return best / best.sum(axis=1, keepdims=True)
