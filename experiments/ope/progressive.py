"""Progressive validation: a Loopwise policy trained counterfactually on a log, each round
decided before the policy learns that round's logged outcome, so an estimate of it is of a
policy that learned online from this traffic, never of one that saw the round it is scored
on. ``loopwise ope`` uses it for ``--policy NAME`` on ``--log`` and ``--dsjson`` alike."""

from __future__ import annotations

import numpy as np


def progressive(policy, phi: np.ndarray, mask: np.ndarray, action: np.ndarray,
                reward: np.ndarray, pscore: np.ndarray) -> np.ndarray:
    """(n, K) action distributions of ``policy`` over the rounds, learning as it goes.

    ``phi`` (n, K, D) candidate features padded to K (valid candidates first, as ``mask``
    (n, K) says), ``action`` (n,) the logged choice, ``reward`` (n,) its reward, ``pscore``
    (n,) its logging probability (the propensity the policy's update weighs it by).

    Examples
    --------
    >>> from policies import make
    >>> phi = np.tile(np.eye(2)[None], (200, 1, 1))        # two actions, one-hot features
    >>> action = np.arange(200) % 2                         # uniform logging, alternating
    >>> reward = (action == 1).astype(float)                # action 1 always pays
    >>> dist = progressive(make("lints", n_features=2, seed=0), phi, np.ones((200, 2), bool),
    ...                    action, reward, np.full(200, 0.5))
    >>> bool(dist[0, 1] < 0.9), bool(dist[-20:, 1].mean() > 0.9)  # untrained, then learned
    (True, True)
    """
    dist = np.zeros(mask.shape)
    for i in range(len(reward)):
        k = int(mask[i].sum())
        row = phi[i:i + 1, :k]
        dist[i, :k] = policy.act(row)[0]
        policy.update(row[0, action[i]][None, :], reward[i:i + 1], pscore[i:i + 1])
    return dist
