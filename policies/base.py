"""The policy contract: action-dependent features in, honest probabilities out.

:meth:`Policy.act` maps candidate features ``phi`` (B, K, D) to choice probabilities (B, K);
the caller samples, so the propensity of what was shown is known exactly. Policies compute
with numpy: one decision at a time, torch's dispatch would cost more than the whole decision.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from policies import kernels
from policies.errors import ValidationError

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order


def check_param(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, integer: bool = False) -> None:
    """Raise :class:`~policies.errors.ValidationError` (a ``ValueError``) naming the
    parameter unless ``value`` is a number in range.

    Examples
    --------
    >>> check_param("epsilon", 0.1, low=0.0, high=1.0)
    >>> check_param("epsilon", 2.0, low=0.0, high=1.0)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: epsilon: must be <= 1.0 (got 2.0)
    """
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
        raise ValidationError(name, f"must be {'an integer' if integer else 'a finite number'}",
                              value)
    if low is not None and (value < low or (low_open and value <= low)):
        raise ValidationError(name, f"must be {'>' if low_open else '>='} {low}", value)
    if high is not None and value > high:
        raise ValidationError(name, f"must be <= {high}", value)


def check_mask(mask: Any, b: int, k: int, name: str, like: str) -> np.ndarray:
    """``mask`` as a C-contiguous boolean array of shape (b, k), the first two axes of
    ``like`` (the layout the compiled kernels are built for)."""
    mask = np.asarray(mask)
    if mask.shape != (b, k):
        raise ValueError(f"{name}: must have shape ({b}, {k}) like {like}'s first two axes "
                         f"(got {mask.shape})")
    if mask.dtype != bool:
        raise TypeError(f"{name}: must be boolean (got dtype {mask.dtype})")
    return np.ascontiguousarray(mask)


class PickledByState:
    """Pickles through ``state_dict``: unpickling builds the policy from its parameters
    (a torch policy's network and optimizer on this machine's device), then loads the state."""

    def __getstate__(self):
        return self.state_dict()

    def __setstate__(self, state):
        self.__init__(**state["params"])
        self.load_state_dict(state)


def as_float_array(value: Any, name: str, copy_: bool = False,
                   keep_float32: bool = False) -> np.ndarray:
    """``value`` as a float64 array (float32 kept if asked); ``TypeError`` naming ``name``
    unless it holds real numbers."""
    arr = value if type(value) is np.ndarray else np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: must be a numeric array (got dtype {arr.dtype})")
    dtype = np.float32 if keep_float32 and arr.dtype == np.float32 else np.float64
    return np.array(arr, dtype=dtype) if copy_ else arr.astype(dtype, copy=False)


class Policy:
    """Base class of every Loopwise policy.

    Subclasses list their constructor parameters in ``_params`` (stored verbatim under the
    same names) and implement the hooks the public methods call after validating (``_act``,
    ``_update``, optionally ``_learn_one``); learned state lives in attributes named in
    ``_state`` so that :meth:`state_dict` can save it.

    Parameters
    ----------
    n_features
        D, the number of features per candidate.
    seed
        Seed of the policy's own generator (exploration draws); ``None`` for fresh entropy.

    Examples
    --------
    >>> import numpy as np
    >>> class First(Policy):
    ...     def _act(self, phi, mask):
    ...         return np.eye(phi.shape[1])[np.zeros(len(phi), dtype=int)]
    ...     def _update(self, phi, rewards, propensities):
    ...         pass
    >>> p = First(n_features=2)
    >>> p.act(np.zeros((1, 3, 2))).tolist()
    [[1.0, 0.0, 0.0]]
    >>> p.update(np.zeros((1, 2)), [1.0], [0.5]).version
    1
    >>> p.act(np.zeros((1, 3)))
    Traceback (most recent call last):
    ...
    ValueError: phi: must have shape (B, K, 2) (got (1, 3))
    """

    _params: tuple[str, ...] = ("n_features", "seed")
    _state: tuple[str, ...] = ()
    #: Contract checks this class opts out of, by name, with the reason.
    opt_out: dict[str, str] = {}
    #: True if ``_act`` with ``mask`` None returns rows that already sum to 1 (up to
    #: rounding), so :meth:`act` need not renormalize them.
    _act_normalized: bool = False
    #: The :class:`~policies.forgetting.Forgetting` of a policy that forgets, else None.
    _forget = None

    def __init__(self, n_features: int, seed: int | None = 0):
        check_param("n_features", n_features, low=1, integer=True)
        if seed is not None:
            check_param("seed", seed, low=0, integer=True)
        self.n_features, self.seed = n_features, seed
        self._rng = np.random.default_rng(seed)
        self._version = 0

    # ---- public contract -------------------------------------------------------------
    @property
    def drift_detections(self) -> int:
        """Changes found in this policy's prediction errors (each sped up its forgetting)."""
        return 0 if self._forget is None else self._forget.detections

    @property
    def version(self) -> int:
        """Number of :meth:`update` calls applied so far (calls with N = 0 apply nothing)."""
        return self._version

    def act(self, phi: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (B, K) of choosing each candidate, float64: rows sum to 1 and
        masked candidates get exactly 0. ``phi`` (B, K, D) holds the candidates' features
        (float32 or float64, finite where unmasked); ``mask`` (B, K) is True where a
        candidate exists (at least one per row), ``None`` if all do."""
        if not (type(phi) is np.ndarray and phi.dtype in _FAST_DTYPES and phi.ndim == 3
                and phi.shape[2] == self.n_features and phi.size):
            # (the common call, a float array of the right shape, skips this)
            phi = as_float_array(phi, "phi", keep_float32=True)
            if phi.ndim != 3 or phi.shape[2] != self.n_features:
                raise ValueError(f"phi: must have shape (B, K, {self.n_features}) "
                                 f"(got {phi.shape})")
            if phi.shape[0] == 0 or phi.shape[1] == 0:
                raise ValueError("phi: needs at least one decision and one candidate "
                                 f"(got {phi.shape})")
        if mask is None:
            # one dot product says "all finite" almost always; the exact check settles overflow
            flat = phi.reshape(-1)
            if not math.isfinite(np.dot(flat, flat)) and not np.isfinite(phi).all():
                raise ValueError("phi: must be finite (got NaN or infinity)")
            probs = self._act(phi, None)
            if self._act_normalized and phi.shape[1] > 1:  # a lone candidate gets exactly 1
                return probs
            return probs / probs.sum(axis=1, keepdims=True)
        b, k, _ = phi.shape
        mask = check_mask(mask, b, k, "mask", "phi")
        valid = mask.any(axis=1)
        if not valid.all():
            raise ValueError(f"mask: row {int(np.argmin(valid))} has no valid candidate")
        finite = np.isfinite(phi).all(axis=2)
        if not finite[mask].all():
            raise ValueError("phi: must be finite on unmasked candidates (got NaN or infinity)")
        if not finite.all():  # masked garbage never reaches the hooks
            phi = np.where(finite[..., None], phi, 0.0)
        probs = np.where(mask, self._act(phi, mask), 0.0)
        return probs / probs.sum(axis=1, keepdims=True)

    def update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> Policy:
        """Learn from N chosen candidates: their features ``phi`` (N, D), finite ``rewards``
        (N,) and the ``propensities`` (N,) in (0, 1] they were chosen with; returns ``self``.
        Inputs are never modified."""
        if (type(phi) is np.ndarray and type(rewards) is np.ndarray
                and type(propensities) is np.ndarray and phi.shape == (1, self.n_features)
                and rewards.shape == (1,) and propensities.shape == (1,)
                and phi.dtype in _FAST_DTYPES and rewards.dtype.kind in "biuf"
                and propensities.dtype.kind in "biuf"):
            # one record, the common online call
            return self._learn_checked(phi[0], float(rewards[0]), float(propensities[0]))
        phi = as_float_array(phi, "phi", copy_=True)
        if phi.ndim != 2 or phi.shape[1] != self.n_features:
            raise ValueError(f"phi: must have shape (N, {self.n_features}) (got {phi.shape})")
        n = phi.shape[0]
        rewards = as_float_array(rewards, "rewards", copy_=True)
        propensities = as_float_array(propensities, "propensities", copy_=True)
        if rewards.shape != (n,):
            raise ValueError(f"rewards: must have shape ({n},) (got {rewards.shape})")
        if propensities.shape != (n,):
            raise ValueError(f"propensities: must have shape ({n},) (got {propensities.shape})")
        if n == 1:  # one record, whatever form it came in
            return self._learn_checked(phi[0], float(rewards[0]), float(propensities[0]))
        if n:
            # one cheap sum says "all finite" almost always; the exact checks name the culprit
            low, high = propensities.min(), propensities.max()
            total = float(phi.sum()) + float(rewards.sum())
            if not math.isfinite(total):
                if not np.isfinite(phi).all():
                    raise ValueError("phi: must be finite (got NaN or infinity)")
                if not np.isfinite(rewards).all():
                    raise ValueError("rewards: must be finite (got NaN or infinity)")
            if not (low > 0 and high <= 1):  # NaN fails both
                raise ValueError(f"propensities: must lie in (0, 1] (got min {low}, max {high})")
            self._update(phi, rewards, propensities)
            self._version += 1
        return self

    def learn_one(self, x: np.ndarray, reward: float, propensity: float) -> Policy:
        """:meth:`update` with one record: its features ``x`` (D,) and two numbers, without
        wrapping them in arrays (the engine's online call); returns ``self``.

        >>> from policies import make
        >>> pol = make("lints", n_features=2, seed=0)
        >>> pol.learn_one(np.array([1.0, 0.0]), 1.0, 0.5).version
        1
        """
        if not (type(x) is np.ndarray and x.shape == (self.n_features,) and x.dtype in _FAST_DTYPES):
            x = as_float_array(x, "phi", copy_=True)
            if x.shape != (self.n_features,):
                raise ValueError(f"phi: must have shape ({self.n_features},) (got {x.shape})")
        return self._learn_checked(x, float(reward), float(propensity))

    def _learn_checked(self, x: np.ndarray, reward: float, propensity: float) -> Policy:
        """One record whose ``x`` is a (D,) float array: the value checks, then the hook."""
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        if not math.isfinite(float(np.dot(x, x)) + reward):
            if not np.isfinite(x).all():
                raise ValueError("phi: must be finite (got NaN or infinity)")
            if not math.isfinite(reward):
                raise ValueError("rewards: must be finite (got NaN or infinity)")
        if not 0 < propensity <= 1:  # NaN fails
            raise ValueError(f"propensities: must lie in (0, 1] (got min {propensity}, "
                             f"max {propensity})")
        self._learn_one(x, reward, propensity)
        self._version += 1
        return self

    def get_params(self) -> dict:
        """Constructor arguments, verbatim."""
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
        """Restore what :meth:`state_dict` saved (into a policy built alike); returns ``self``."""
        if not isinstance(state, dict) or "state" not in state:
            raise ValueError("state: must be a dict from Policy.state_dict()")
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state: saved from {state.get('class')!r}, not {type(self).__name__!r}")
        if state["params"].get("n_features") != self.n_features:
            raise ValueError(f"state: n_features is {state['params'].get('n_features')}, "
                             f"this policy has {self.n_features}")
        for name, value in state["state"].items():
            setattr(self, name, copy.deepcopy(value))
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._version = int(state["version"])
        self._after_load()
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- hooks (never modify their inputs) ---------------------------------------------
    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """``phi`` float32 or float64, as given; ``mask`` None when every candidate exists."""
        raise NotImplementedError

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        """A mini-batch (N >= 2), float64 copies."""
        raise NotImplementedError

    def _learn_one(self, x: np.ndarray, reward: float, propensity: float) -> None:
        """One record: ``x`` (D,) float64, the caller's array (read it, never write it; copy
        what you keep), the rest Python floats. Learns exactly what ``_update`` learns from
        the same record; override for speed."""
        self._update(x[None].copy(), np.array([reward]), np.array([propensity]))

    def _after_load(self) -> None:
        """Drop caches derived from the learned state (called after loading it)."""


def mix_uniform(probs: np.ndarray, mask: np.ndarray | None, epsilon: float) -> np.ndarray:
    """``(1 - epsilon) * probs + epsilon * uniform`` over the valid (``mask`` None: all)."""
    if mask is None or mask.all():
        return (1.0 - epsilon) * probs + epsilon / probs.shape[1]
    return (1.0 - epsilon) * probs + (epsilon / mask.sum(axis=1, keepdims=True)) * mask


def greedy_mix(scores: np.ndarray, mask: np.ndarray | None, epsilon: float) -> np.ndarray:
    """``1 - epsilon`` on each row's best valid score (exact ties split it), ``epsilon``
    spread over the valid candidates (:func:`policies.kernels.greedy_mix`).

    >>> greedy_mix(np.array([[1.0, 3.0, 3.0, 0.0]]), None, 0.2).tolist()
    [[0.05, 0.45, 0.45, 0.05]]
    """
    probs = np.empty(scores.shape)
    kernels.greedy_mix(scores, mask, epsilon, probs)
    return probs
