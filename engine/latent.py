"""Latent factors of users and items, learned online by River's ``reco.FunkMF``.

:class:`LatentFactors` *is* River's FunkMF (same state, initializer, optimizers and
``predict_one``). For the configuration the engine uses (plain SGD with a constant learning
rate on the squared loss) it learns with a compiled kernel (:func:`engine.kernels.funk_sgd`)
that does River's floating-point operations in River's order, a stream of events per call,
on latent vectors kept as rows of one matrix: the latents are bit for bit River's
(``tests/test_latent.py`` checks it on a stream). Any other loss, optimizer or schedule
runs River's own ``learn_one``. ``setup.py`` pins River to the versions the restatement was
checked against.
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
        """``learn_one(user, item, y)`` for each triple, in order, with the same results.

        For SGD on the squared loss the latent vectors live as rows of two matrices (the
        dicts hold views of those rows, see :class:`_Arena`), so one compiled call updates
        them event after event with no copying in or out; new latents are drawn in
        ``learn_one``'s order (user, then item, event by event).
        """
        if not triples:
            return
        uo, io = self.u_optimizer, self.i_optimizer
        if not (type(self.loss) is optim.losses.Squared and _plain(uo) and _plain(io)):
            for user, item, y in triples:
                super().learn_one(user, item, y)
            return
        users = self._arena("_user_arena", self.u_latents)
        items = self._arena("_item_arena", self.i_latents)
        # rows looked up event by event, user first (new vectors drawn in learn_one's
        # order); either look-up may grow its matrix, so the matrices are read after
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
        an item never learned). Reading draws no vector (the model is unchanged).

        ``memo``: a dict kept with a list of items that recurs (a re-ranked pool); it keeps
        the items' rows in this model's matrix. Rows never move, so they stay right while
        every item has one, or while no item has been learned since (an unknown item's row
        0 may have become a real row)."""
        arena = self._item_rows()
        n = len(arena.rows)
        seen = None if memo is None else memo.get(arena.token)
        if seen is not None and (seen[0] or seen[1] == n):
            rows = seen[2]
        else:
            rows = np.fromiter(map(arena.rows.get, items, repeat(0)), np.int64, len(items))
            if memo is not None:
                memo.clear()  # (one model's rows: a restored model gets a new token)
                memo[arena.token] = (bool(rows.all()), n, rows)
        kernels.row_dots(arena.matrix, rows, user, out, col)

    def _item_rows(self) -> _Arena:
        """The item arena, with a row for every learned item (one is made for a model
        restored since, and vectors learned outside it are taken in, in the dict's order)."""
        arena = self._arena("_item_arena", self.i_latents)
        if len(arena.rows) != len(arena.latents):
            for key in [k for k in arena.latents if k not in arena.rows]:
                arena.row(key)
        return arena

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
        state = dict(self.__dict__)
        state.pop("_user_arena", None)  # the dicts' values pickle as plain vectors; the
        state.pop("_item_arena", None)  # arenas are rebuilt from them when next needed
        return state


class _Arena:
    """Latent vectors as rows of one matrix: ``latents[key]`` is a view of row ``rows[key]``,
    so River's code reads and writes the dict's vectors while a compiled loop indexes the
    matrix. New keys get a row (the dict's own factory draws their initial values); the
    matrix doubles when full, re-pointing every view; forgotten rows are reused. Row 0
    stays zeros (no key's): the row an unknown item's score reads."""

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
            if row == len(self.matrix):
                self._grow()
        self.matrix[row] = vector
        self.latents[key] = self.matrix[row]
        self.rows[key] = row
        return row

    def _grow(self) -> None:
        bigger = np.empty((2 * len(self.matrix), self.matrix.shape[1]))
        bigger[:len(self.matrix)] = self.matrix
        self.matrix = bigger
        latents = self.latents
        for key, row in self.rows.items():
            latents[key] = bigger[row]

    def drop(self, key) -> None:
        self.latents.pop(key, None)
        row = self.rows.pop(key, None)
        if row is not None:
            self.free.append(row)
