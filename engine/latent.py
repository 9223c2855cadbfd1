"""Latent factors of users and items, learned online by River's ``reco.FunkMF``.

:class:`LatentFactors` *is* River's FunkMF (same state, initializer, optimizers and
``predict_one``). Its ``learn_one`` restates River's update for the configuration the
engine uses (plain SGD with a constant learning rate on the squared loss) with fewer
temporaries and no per-call dicts: the same floating-point operations in the same order,
so the latents are bit for bit River's (``tests/test_latent.py`` checks it on a stream).
:meth:`LatentFactors.learn_many` runs a stream of such updates in one compiled call (numba,
see :mod:`policies.kernels`) with the same operations, so its latents are bit for bit too.
Any other loss, optimizer or schedule runs River's own ``learn_one``.
"""

from __future__ import annotations

import numpy as np
from river import optim, reco

from policies import kernels


def _plain(optimizer) -> bool:
    return type(optimizer) is optim.SGD and type(optimizer.lr) is optim.schedulers.Constant


class LatentFactors(reco.FunkMF):
    """River's FunkMF with a leaner ``learn_one`` for SGD + squared loss (same results).

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
        uo, io = self.u_optimizer, self.i_optimizer
        if not (type(self.loss) is optim.losses.Squared and _plain(uo) and _plain(io)):
            return super().learn_one(user, item, y, x)
        u = self.u_latents[user]  # looked up in predict_one's order (new latents drawn alike)
        v = self.i_latents[item]
        g = 2 * (np.dot(u, v).item() - y)  # Squared.gradient(y, predict_one(user, item))
        clip = self.clip_gradient
        g = max(min(g, clip), -clip)
        l2 = self.l2
        lr_u, lr_i = uo.lr.learning_rate, io.lr.learning_rate
        # numpy's elementwise float64 ops on 8 numbers are the IEEE operations Python floats
        # do, without a ufunc call each: both gradients from the old latents, then the steps
        # (River: grad = g * other + l2 * own; SGD: w -= learning_rate * grad)
        uu, vv = u.tolist(), v.tolist()
        u[:] = [a - lr_u * (g * b + l2 * a) for a, b in zip(uu, vv, strict=True)]
        v[:] = [b - lr_i * (g * a + l2 * b) for a, b in zip(uu, vv, strict=True)]
        uo.n_iterations += 1
        io.n_iterations += 1

    def learn_many(self, triples) -> None:
        """``learn_one(user, item, y)`` for each triple, in order, with the same results.

        For SGD on the squared loss, latents (new ones drawn in ``learn_one``'s order) are
        gathered into one matrix, updated event after event by one compiled call, and
        written back: a few microseconds per event less than ``learn_one`` each.
        """
        uo, io = self.u_optimizer, self.i_optimizer
        fast = (kernels.AVAILABLE and type(self.loss) is optim.losses.Squared and _plain(uo)
                and _plain(io))
        if not fast or len(triples) < 8:
            for user, item, y in triples:
                self.learn_one(user, item, y)
            return
        u_lat, i_lat = self.u_latents, self.i_latents
        user_rows: dict = {}  # user -> its row in the batch's matrix
        item_rows: dict = {}
        vectors: list[np.ndarray] = []
        index = []
        for user, item, _ in triples:  # new latents drawn in learn_one's order: user, item
            row = user_rows.get(user)
            if row is None:
                row = user_rows[user] = len(vectors)
                vectors.append(u_lat[user])
            index.append(row)
            row = item_rows.get(item)
            if row is None:
                row = item_rows[item] = len(vectors)
                vectors.append(i_lat[item])
            index.append(row)
        targets = [y for _, _, y in triples]
        matrix = np.concatenate(vectors).reshape(len(vectors), -1)
        kernels.funk_sgd(matrix, np.array(index, dtype=np.int64), np.array(targets, dtype=float),
                         uo.lr.learning_rate, io.lr.learning_rate, float(self.l2),
                         float(self.clip_gradient))
        for vec, row in zip(vectors, matrix, strict=True):
            vec[:] = row
        uo.n_iterations += len(triples)
        io.n_iterations += len(triples)
