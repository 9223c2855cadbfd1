"""Reward models for the model-based estimators, fit with k-fold cross-fitting.

Cross-fitting: the rounds are split into k folds at random; the predictions for a fold
come from a model fit on the other folds only, so DM/DR never score a round with a model
that saw its reward. A model is any object with ``fit(X, y)`` returning itself and
``predict(X) -> (m,)``; :class:`Ridge` (closed form, numpy) is the default and
:class:`MLP` (a small torch network) handles nonlinear rewards.

Features of (round i, action a, position k), see :func:`design_matrix`: an intercept,
one-hot a, the round's context ``x_i`` crossed with one-hot a (one linear model per action;
``n_actions * d_x`` columns), and one-hot k when ``len_list > 1``. With the engine's
action-dependent features ``action_context[i, a]`` those replace the one-hot/cross part.
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np

from engine.checks import check_int, check_real
from engine.errors import ValidationError, ValidationTypeError
from experiments.ope.base import OPEInputError

#: Prediction batches are built in chunks of about this many feature entries.
CHUNK_ENTRIES = 1 << 22


class Ridge:
    """Closed-form ridge regression ``beta = (X'X + l2 I)^-1 X'y``.

    Parameters
    ----------
    l2
        L2 penalty, >= 0 (the intercept column, if any, is penalized too).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.c_[np.ones(50), np.arange(50.0)]
    >>> Ridge(l2=1e-6).fit(x, 2 + 3 * x[:, 1]).predict(np.array([[1.0, 10.0]])).round(3).tolist()
    [32.0]
    """

    def __init__(self, l2: float = 1.0):
        if not check_real("l2", l2) >= 0:
            raise ValidationError("l2", "must be >= 0", l2)
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        d = x.shape[1]
        gram = x.T @ x + self.l2 * np.eye(d)
        xty = x.T @ y
        # l2 > 0 makes the gram matrix positive definite, so a direct solve suffices; with
        # l2 = 0 it may be singular, and lstsq (an SVD) gives the minimum-norm solution
        try:
            self.beta_ = np.linalg.solve(gram, xty) if self.l2 > 0 else None
        except np.linalg.LinAlgError:
            self.beta_ = None
        if self.beta_ is None:
            self.beta_ = np.linalg.lstsq(gram, xty, rcond=None)[0]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.beta_


class MLP:
    """A one-hidden-layer ReLU network fit by full-batch Adam on the squared error (torch).

    Inputs are standardized with the training data's statistics; the generator seeded by
    ``seed`` draws the initial weights, so a fit is reproducible.

    Parameters
    ----------
    hidden
        Hidden units.
    epochs
        Full-batch Adam steps.
    lr
        Adam's learning rate.
    l2
        Weight decay on the weight matrices.
    seed
        Seed of the ``torch.Generator`` for the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-2, 2, 200)[:, None]
    >>> model = MLP(hidden=32, epochs=400, seed=0).fit(x, x[:, 0] ** 2)
    >>> bool(np.abs(model.predict(x) - x[:, 0] ** 2).mean() < 0.1)
    True
    """

    def __init__(self, hidden: int = 32, epochs: int = 300, lr: float = 0.02,
                 l2: float = 1e-4, seed: int = 0):
        check_int("hidden", hidden, 1)
        check_int("epochs", epochs, 1)
        self.hidden, self.epochs, self.lr, self.l2, self.seed = hidden, epochs, lr, l2, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLP:
        import torch

        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        xs = torch.as_tensor((x - self.mean_) / self.scale_, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        g = torch.Generator().manual_seed(self.seed)
        d, h = x.shape[1], self.hidden
        w1 = (torch.randn(d, h, generator=g) * np.sqrt(2.0 / d)).requires_grad_()
        b1 = torch.zeros(h, requires_grad=True)
        w2 = (torch.randn(h, generator=g) / np.sqrt(h)).requires_grad_()
        b2 = torch.tensor(float(y.mean()), requires_grad=True)
        opt = torch.optim.Adam([w1, b1, w2, b2], lr=self.lr)
        for _ in range(self.epochs):
            opt.zero_grad()
            pred = torch.relu(xs @ w1 + b1) @ w2 + b2
            loss = ((pred - yt) ** 2).mean() + self.l2 * ((w1 ** 2).sum() + (w2 ** 2).sum())
            loss.backward()
            opt.step()
        self.params_ = [p.detach().numpy().astype(float) for p in (w1, b1, w2, b2)]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2 = self.params_
        return np.maximum((x - self.mean_) / self.scale_ @ w1 + b1, 0.0) @ w2 + b2


def design_matrix(rows: np.ndarray, action: np.ndarray, position: np.ndarray, n_actions: int,
                  len_list: int, contexts: np.ndarray | None = None,
                  action_context: np.ndarray | None = None) -> np.ndarray:
    """Regression features of (round ``rows[j]``, ``action[j]``, ``position[j]``), shape (m, d).

    Columns: intercept; then ``action_context[rows[j], action[j]]`` if given, else one-hot
    action followed by ``contexts[rows[j]]`` placed in the logged action's block (zeros in
    the others); then one-hot position when ``len_list > 1``.

    Examples
    --------
    >>> import numpy as np
    >>> design_matrix(np.array([0]), np.array([1]), np.array([0]), 2, 1,
    ...               contexts=np.array([[5.0]])).tolist()
    [[1.0, 0.0, 1.0, 0.0, 5.0]]
    """
    m, j = len(rows), np.arange(len(rows))
    if action_context is not None:
        inner = action_context.shape[2]
    else:
        dx = 0 if contexts is None else contexts.shape[1]
        inner = n_actions * (1 + dx)
    out = np.zeros((m, 1 + inner + (len_list if len_list > 1 else 0)))
    out[:, 0] = 1.0
    if action_context is not None:
        out[:, 1:1 + inner] = action_context[rows, action]
    else:
        out[j, 1 + action] = 1.0
        if dx:
            cols = 1 + n_actions + action[:, None] * dx + np.arange(dx)
            out[j[:, None], cols] = contexts[rows]
    if len_list > 1:
        out[j, 1 + inner + position] = 1.0
    return out


def _linear_scores(beta: np.ndarray, rows: np.ndarray, n_actions: int, len_list: int,
                   contexts: np.ndarray | None = None,
                   action_context: np.ndarray | None = None) -> np.ndarray:
    """``design_matrix(...) @ beta`` for every action and position of ``rows``, shape
    (len(rows), n_actions, len_list), from the design's block structure: an intercept, the
    action part (one-hot plus the context in the action's block, or action features), and a
    position one-hot. Costs O(rows * actions * features) instead of building the rows."""
    if action_context is not None:
        inner = action_context.shape[2]
        scores = action_context[rows] @ beta[1:1 + inner]                  # (m, A)
    else:
        inner = n_actions * (1 + (0 if contexts is None else contexts.shape[1]))
        scores = np.broadcast_to(beta[1:1 + n_actions], (len(rows), n_actions)).copy()
        if contexts is not None:
            blocks = beta[1 + n_actions:1 + inner].reshape(n_actions, contexts.shape[1])
            scores += contexts[rows] @ blocks.T
    scores += beta[0]
    if len_list > 1:
        return scores[:, :, None] + beta[1 + inner:1 + inner + len_list][None, None, :]
    return scores[:, :, None]


def check_k_folds(k_folds: int, n: int) -> None:
    """Raise :class:`engine.errors.ValidationError` unless ``k_folds`` is an integer in
    [2, n] (:class:`~engine.errors.ValidationTypeError` if it is no integer)."""
    if isinstance(k_folds, bool) or not isinstance(k_folds, Integral):
        raise ValidationTypeError("k_folds", "must be an integer", k_folds)
    if not 2 <= k_folds <= n:
        raise ValidationError("k_folds", f"must lie in [2, n_rounds={n}]", k_folds)


def check_features(n: int, n_actions: int, contexts=None, action_context=None):
    """Validated ``contexts`` (n, d_x) and ``action_context`` (n, n_actions, d_a) as floats."""
    if contexts is not None:
        contexts = np.asarray(contexts, dtype=float)
        if contexts.ndim == 1:
            contexts = contexts[:, None]
        if contexts.ndim != 2 or contexts.shape[0] != n:
            raise OPEInputError("contexts", f"must have shape (n_rounds={n}, n_features) "
                                f"(got {contexts.shape})")
        if not np.isfinite(contexts).all():
            raise OPEInputError("contexts", "must be finite (got NaN or inf)")
    if action_context is not None:
        action_context = np.asarray(action_context, dtype=float)
        if action_context.ndim != 3 or action_context.shape[:2] != (n, n_actions):
            raise OPEInputError("action_context", f"must have shape (n_rounds={n}, "
                                f"n_actions={n_actions}, n_features) (got {action_context.shape})")
        if not np.isfinite(action_context).all():
            raise OPEInputError("action_context", "must be finite (got NaN or inf)")
    return contexts, action_context


def cross_fit(reward: np.ndarray, action: np.ndarray, position: np.ndarray, n_actions: int,
              len_list: int, *, contexts: np.ndarray | None = None,
              action_context: np.ndarray | None = None, reward_model=None, k_folds: int = 3,
              clip: bool = True, folds: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Out-of-fold estimated rewards, shape (n, n_actions, len_list).

    Each fold's model is a deep copy of ``reward_model`` (default ``Ridge()``) fit on the
    other folds' logged (round, action, position) rows and their rewards; it then predicts
    every action at every position for the fold's rounds. With ``clip`` (default) the
    predictions are clipped to the observed reward range, so a model that extrapolates
    (a linear one on binary rewards) cannot predict impossible rewards. ``folds`` (n,) gives
    each round's fold in ``range(k_folds)`` explicitly (default: a random split seeded by
    ``seed``); the refitting bootstrap uses it to keep a round's copies in one fold.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> action = rng.integers(2, size=300)
    >>> reward = np.where(action == 1, 0.8, 0.2)
    >>> q = cross_fit(reward, action, np.zeros(300, int), 2, 1, reward_model=Ridge(l2=1e-6))
    >>> q.shape, q[:, :, 0].mean(axis=0).round(3).tolist()
    ((300, 2, 1), [0.2, 0.8])
    """
    n = len(reward)
    check_k_folds(k_folds, n)
    model = Ridge() if reward_model is None else reward_model
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        raise ValidationTypeError("reward_model", "must have fit(X, y) and predict(X) methods",
                                  model)
    contexts, action_context = check_features(n, n_actions, contexts, action_context)
    feats = dict(n_actions=n_actions, len_list=len_list, contexts=contexts,
                 action_context=action_context)
    if folds is None:
        folds = np.random.default_rng(seed).permutation(n) % k_folds
    pairs_a = np.repeat(np.arange(n_actions), len_list)
    pairs_k = np.tile(np.arange(len_list), n_actions)
    out = np.empty((n, n_actions, len_list))
    for f in range(k_folds):
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        if not len(test):
            continue
        if not len(train):
            raise ValidationError("folds", f"fold {f} holds every round; nothing left to fit on")
        fitted = copy.deepcopy(model).fit(
            design_matrix(train, action[train], position[train], **feats), reward[train])
        # linear: score every (action, position) without building rows. Kept as a second
        # path because it pays: cross_fit with Ridge, n=5,000, 10 actions, 3 positions, 5
        # context features, 0.007-0.012 s against 0.069-0.091 s through design rows (6-13x)
        if type(fitted) is Ridge:
            out[test] = _linear_scores(fitted.beta_, test, **feats)
            continue
        width = design_matrix(test[:1], action[test[:1]], position[test[:1]], **feats).shape[1]
        step = max(1, CHUNK_ENTRIES // (len(pairs_a) * width))
        for s in range(0, len(test), step):
            rows = test[s:s + step]
            x = design_matrix(np.repeat(rows, len(pairs_a)), np.tile(pairs_a, len(rows)),
                              np.tile(pairs_k, len(rows)), **feats)
            pred = np.asarray(fitted.predict(x), dtype=float).reshape(-1)
            if pred.shape != (len(x),):
                raise ValidationError("reward_model",
                                      f"predict returned {pred.size} values for {len(x)} rows")
            out[rows] = pred.reshape(len(rows), n_actions, len_list)
    return np.clip(out, reward.min(), reward.max()) if clip else out
