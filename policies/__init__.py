"""Loopwise policies: contextual bandits over action-dependent features.

Every policy follows :class:`policies.base.Policy`'s contract: ``act(phi, mask)`` with ``phi``
(B, K, D) returns probabilities (B, K); ``update`` learns. Build one by name:

>>> import numpy as np
>>> from policies import make
>>> p = make("lints", n_features=3, seed=0)
>>> p.act(np.zeros((2, 4, 3))).shape
(2, 4)
>>> sorted(available())[:4]
['egreedy', 'lints', 'linucb', 'neural_ts']
"""

from __future__ import annotations

from policies.base import Policy
from policies.egreedy import EpsilonGreedy
from policies.errors import ValidationError
from policies.lints import LinTS
from policies.linucb import LinUCB
from policies.slate import sample_slate
from policies.slateq import SlateQ
from policies.squarecb import SquareCB
from policies.uniform import Uniform
from policies.vw import EXPLORATIONS

_REGISTRY: dict[str, type[Policy]] = {"uniform": Uniform, "egreedy": EpsilonGreedy,
                                       "linucb": LinUCB, "lints": LinTS, "squarecb": SquareCB,
                                       "slateq": SlateQ}


def available() -> list[str]:
    """Names :func:`make` accepts (``vw:<exploration>`` needs ``loopwise[vw]``)."""
    return [*_REGISTRY, "neural_ts", *(f"vw:{e}" for e in EXPLORATIONS)]


def make(name: str, n_features: int, seed: int | None = 0, **params) -> Policy:
    """Build a policy by name with parameters (as read from a config).

    Examples
    --------
    >>> make("squarecb", n_features=4, gamma_scale=5.0)  # doctest: +NORMALIZE_WHITESPACE
    SquareCB(n_features=4, seed=0, l2=1.0, discount=None, half_life=5000.0, drift_factor=60.0,
             drift_period=None, gamma_scale=5.0, gamma_exponent=0.5)
    >>> make("lints", n_features=4, temperature=2)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: temperature: unknown parameter of policy 'lints'; allowed: ['discount', 'drift_factor', 'drift_period', 'epsilon', 'half_life', 'l2', 'n_draws', 'v']

    Every error is a :class:`~policies.errors.ValidationError` naming ``policy`` or the
    parameter, so a caller can name it in its own terms (``variants.b.params.v``).
    """
    if not isinstance(name, str):
        raise ValidationError("policy", "must be a name such as 'lints'", name)
    if name == "neural_ts":
        from policies.neural import NeuralTS as cls
    elif name.startswith("vw:") and name[3:] in EXPLORATIONS:
        from policies.vw import VWPolicy as cls
        params = {**params, "exploration": name[3:]}
    elif name in _REGISTRY:
        cls = _REGISTRY[name]
    else:
        raise ValidationError("policy", f"unknown policy {name!r}; choose from {available()}")
    allowed = set(cls._params) - {"n_features", "seed"}
    for key in params:
        if key not in allowed:
            raise ValidationError(key, f"unknown parameter of policy {name!r}; allowed: "
                                  f"{sorted(allowed)}")
    return cls(n_features=n_features, seed=seed, **params)


__all__ = ["EpsilonGreedy", "LinTS", "LinUCB", "Policy", "SquareCB", "Uniform", "available",
           "make", "sample_slate"]
