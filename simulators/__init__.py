"""Loopwise user simulators: gymnasium environments with ground truth.

Importing this package registers the environments under the ``loopwise`` namespace:

>>> import gymnasium as gym
>>> import simulators
>>> env = gym.make("loopwise/DriftingStream-v0", n_users=100, n_items=200)
>>> obs, info = env.reset(seed=0)
>>> sorted(obs)
['item_features', 'item_ids', 'item_topics', 'positions', 'user_features', 'user_id']
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from simulators.config import PRESETS, SimConfig, make_config
from simulators.core import SimCore
from simulators.envs import BatchedRecEnv, RecSessionEnv, RecStreamEnv
from simulators.sessions import BatchedSessionEnv

#: Registered ids and their default keyword arguments.
ENV_IDS: dict[str, tuple[str, dict]] = {
    "loopwise/RecStream-v0": ("simulators.envs:RecStreamEnv", {"preset": "stationary"}),
    "loopwise/DriftingStream-v0": ("simulators.envs:RecStreamEnv", {"preset": "drifting"}),
    "loopwise/TrendStream-v0": ("simulators.envs:RecStreamEnv", {"preset": "trend"}),
    "loopwise/FatigueStream-v0": ("simulators.envs:RecStreamEnv", {"preset": "fatigue"}),
    "loopwise/ColdStartStream-v0": ("simulators.envs:RecStreamEnv", {"preset": "cold_start"}),
    "loopwise/RecSession-v0": ("simulators.envs:RecSessionEnv", {"preset": "stationary"}),
    "loopwise/LongTermSession-v0": ("simulators.envs:RecSessionEnv", {"preset": "long_term"}),
}

for _id, (_entry, _kwargs) in ENV_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry, kwargs=_kwargs)

__all__ = ["ENV_IDS", "PRESETS", "BatchedRecEnv", "BatchedSessionEnv", "RecSessionEnv",
           "RecStreamEnv", "SimConfig", "SimCore", "make_config"]
