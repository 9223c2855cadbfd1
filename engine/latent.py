"""Latent factors of users and items, learned online by River's ``reco.FunkMF``.

:class:`LatentFactors` *is* River's FunkMF. For plain SGD with a constant learning rate on the
squared loss it learns with a compiled kernel (:func:`engine.kernels.funk_sgd`) that does
River's floating-point operations in River's order on latent vectors kept as rows of one
matrix: the latents are bit for bit River's (``tests/test_latent.py``). Any other loss,
optimizer or schedule runs River's own ``learn_one``. ``setup.py`` pins River accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count, repeat

import numpy as np
from river import optim, reco

from engine import kernels

_ARENA_TOKENS = count(1)


def _plain(optimizer) -> bool:
    return type(optimizer) is optim.SGD and type(optimizer.lr) is optim.schedulers.Constant


class LatentFactors(reco.FunkMF):
    """River's FunkMF, learning SGD + squared loss with a compiled kernel (same results).

    Examples
    --------
    >>> from river import optim, reco
    >>> fast = LatentFactors(n_factors=4, optimizer=optim.SGD(0.05), l2=0.001, seed=1)
    >>> ref = reco.FunkMF(n_factors=4, optimizer=optim.SGD(0.05), l2=0.001, seed=1)
    >>> for user, item, y in [("u1", "a", 1.0), ("u2", "a", 0.0), ("u1", "b", 1.0)]:
    ...     fast.learn_one(user, item, y)
    ...     ref.learn_one(user, item, y)
    >>> bool((fast.u_latents["u1"] == ref.u_latents["u1"]).all())
    True
    """

    def learn_one(self, user, item, y, x=None):
        self.learn_many([(user, item, y)])

    def learn_many(self, triples) -> None:
        """``learn_one(user, item, y)`` for each triple, in order, with the same results (for
        SGD on the squared loss, one compiled call on the rows of :class:`_Arena` matrices)."""
        if not triples:
            return
        uo, io = self.u_optimizer, self.i_optimizer
        if not (type(self.loss) is optim.losses.Squared and _plain(uo) and _plain(io)):
            for user, item, y in triples:
                super().learn_one(user, item, y)
            return
        users = self._arena("_user_arena", self.u_latents)
        items = self._arena("_item_arena", self.i_latents)
        # new vectors drawn in learn_one's order (user, then item); the matrices are read
        # after, as either look-up may grow its matrix
        rows = [(users.row(user), items.row(item)) for user, item, _ in triples]
        rates = (uo.lr.learning_rate, io.lr.learning_rate, float(self.l2),
                 float(self.clip_gradient))
        if len(triples) == 1:  # one reward's step: no index arrays to build
            kernels.funk_sgd_one(users.matrix, items.matrix, *rows[0], float(triples[0][2]),
                                 *rates)
        else:
            u_index, i_index = zip(*rows, strict=True)
            kernels.funk_sgd(users.matrix, items.matrix, np.array(u_index, dtype=np.int64),
                             np.array(i_index, dtype=np.int64),
                             np.array([y for _, _, y in triples], dtype=float), *rates)
        uo.n_iterations += len(triples)
        io.n_iterations += len(triples)

    def item_scores(self, items: Sequence, user: np.ndarray, out: np.ndarray, col: int,
                    memo: dict | None = None) -> None:
        """Write each item's latent score, its vector . ``user``, into ``out[:, col]`` (0 for
        an item never learned); the model is unchanged. ``memo``: a dict kept with a list of
        items that recurs, holding their rows (valid while every item has one, or while no
        item has been learned since)."""
        arena = self._arena("_item_arena", self.i_latents)
        if len(arena.rows) != len(arena.latents):  # take in vectors learned outside it
            for key in [k for k in arena.latents if k not in arena.rows]:
                arena.row(key)
        n = len(arena.rows)
        seen = None if memo is None else memo.get(arena.token)
        if seen is not None and (seen[0] or seen[1] == n):
            rows = seen[2]
        else:
            found = [*map(arena.rows.get, items, repeat(0))]
            rows = np.array(found, dtype=np.int64)
            if memo is not None:
                memo.clear()  # (one model's rows: a restored model gets a new token)
                memo[arena.token] = (0 not in found, n, rows)  # (a list scan, no numpy reduction)
        kernels.row_dots(arena.matrix, rows, user, out, col)

    def forget_user(self, user) -> None:
        """Drop a user's latent vector (and its row)."""
        self._drop("_user_arena", self.u_latents, user)

    def forget_item(self, item) -> None:
        """Drop an item's latent vector (and its row): erasing the only user who touched it."""
        self._drop("_item_arena", self.i_latents, item)

    def _drop(self, name: str, latents: dict, key) -> None:
        arena = self.__dict__.get(name)
        if arena is not None and arena.latents is latents:
            arena.drop(key)
        else:
            latents.pop(key, None)

    def _arena(self, name: str, latents: dict) -> _Arena:
        arena = self.__dict__.get(name)
        if arena is None or arena.latents is not latents:  # new, restored, or replaced
            arena = _Arena(latents, self.n_factors)
            setattr(self, name, arena)
        return arena

    def __getstate__(self):
        # the dicts' values pickle as plain vectors; the arenas are rebuilt when next needed
        return {k: v for k, v in self.__dict__.items() if k not in ("_user_arena", "_item_arena")}


class _Arena:
    """Latent vectors as rows of one matrix: ``latents[key]`` is a view of row ``rows[key]``,
    so River's code and a compiled loop share them. Forgotten rows are reused; row 0 stays
    zeros (an unknown item's row)."""

    def __init__(self, latents: dict, n_factors: int):
        self.token = next(_ARENA_TOKENS)  # names this arena in memos of item rows
        self.latents = latents
        self.rows: dict = {}
        self.free: list[int] = []
        self.matrix = np.empty((max(256, 2 * len(latents) + 1), n_factors))
        self.matrix[0] = 0.0
        for key in list(latents):
            self._adopt(key, latents[key])

    def row(self, key) -> int:
        row = self.rows.get(key)
        if row is None:
            row = self._adopt(key, self.latents[key])  # a defaultdict draws a new vector
        return row

    def _adopt(self, key, vector: np.ndarray) -> int:
        if self.free:
            row = self.free.pop()
        else:
            row = len(self.rows) + 1  # rows 1..n are in use (row 0: the zeros)
            if row == len(self.matrix):  # full: double it, re-pointing every view
                self.matrix = np.concatenate([self.matrix, np.empty_like(self.matrix)])
                for k, r in self.rows.items():
                    self.latents[k] = self.matrix[r]
        self.matrix[row] = vector
        self.latents[key] = self.matrix[row]
        self.rows[key] = row
        return row

    def drop(self, key) -> None:
        self.latents.pop(key, None)
        row = self.rows.pop(key, None)
        if row is not None:
            self.free.append(row)
