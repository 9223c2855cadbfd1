"""Reward models for the model-based estimators, fit with k-fold cross-fitting.

Cross-fitting: the rounds are split into k folds; the model that predicts a fold's rewards
was fit on the other folds only, so DM/DR never evaluate a model on its own training data.
"""

from __future__ import annotations

import numpy as np


class Ridge:
    """Closed-form ridge regression ``y ~ X beta`` (any object with fit/predict will do).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.c_[np.ones(50), np.arange(50.0)]
    >>> Ridge(l2=1e-6).fit(x, 2 + 3 * x[:, 1]).predict(np.array([[1.0, 10.0]])).round(3).tolist()
    [32.0]
    """

    def __init__(self, l2: float = 1.0):
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        d = x.shape[1]
        self.beta_ = np.linalg.solve(x.T @ x + self.l2 * np.eye(d), x.T @ y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.beta_


def action_features(n: int, n_actions: int, len_list: int, contexts: np.ndarray | None = None,
                    action_context: np.ndarray | None = None) -> np.ndarray:
    """Per (round, action, position) regression features, shape (n, n_actions, len_list, d).

    With ``action_context`` (n, n_actions, d_a) those features are used as they are (the
    engine's action-dependent features); otherwise one-hot actions, and context x one-hot
    action crosses when ``contexts`` (n, d_x) are given. A one-hot position is appended
    when ``len_list > 1``.
    """
    if action_context is not None:
        base = np.asarray(action_context, dtype=float)
        if base.shape[:2] != (n, n_actions):
            raise ValueError(f"action_context: must have shape ({n}, {n_actions}, d) "
                             f"(got {base.shape})")
    else:
        x = None if contexts is None else np.asarray(contexts, dtype=float)
        if x is not None and (x.ndim != 2 or x.shape[0] != n):
            raise ValueError(f"contexts: must have shape ({n}, d) (got {x.shape})")
        eye = np.broadcast_to(np.eye(n_actions), (n, n_actions, n_actions))
        parts = [np.ones((n, n_actions, 1)), eye]
        if x is not None and x.shape[1]:
            parts.append((x[:, None, None, :] * np.eye(n_actions)[None, :, :, None])
                         .reshape(n, n_actions, -1))
        base = np.concatenate(parts, axis=2)
    feats = np.repeat(base[:, :, None, :], len_list, axis=2)
    if len_list > 1:
        pos = np.broadcast_to(np.eye(len_list)[None, None], (n, n_actions, len_list, len_list))
        feats = np.concatenate([feats, pos], axis=3)
    return feats


def cross_fit(reward: np.ndarray, action: np.ndarray, position: np.ndarray, feats: np.ndarray,
              k_folds: int = 3, model_factory=Ridge, seed: int = 0) -> np.ndarray:
    """Estimated rewards (n, n_actions, len_list), each fold predicted by a model fit on the
    other folds using only the logged (action, position) of each round."""
    n = len(reward)
    if k_folds < 2:
        raise ValueError(f"k_folds: must be >= 2 (got {k_folds})")
    folds = np.random.default_rng(seed).permutation(n) % k_folds
    idx = np.arange(n)
    logged = feats[idx, action, position]  # (n, d)
    out = np.zeros(feats.shape[:3])
    for f in range(k_folds):
        train, test = folds != f, folds == f
        if not train.any() or not test.any():
            continue
        model = model_factory().fit(logged[train], reward[train])
        sub = feats[test]
        out[test] = model.predict(sub.reshape(-1, sub.shape[-1])).reshape(sub.shape[:3])
    return out
