"""The candidate law: which K items a user is offered each step.

Item i is drawn with weight ``0.7 / n + 0.3 * exp(pop_i) / P`` (P: the sum of ``exp(pop)``
over the catalog), times ``fresh_boost`` while it is fresh; a row keeps K distinct items.
:class:`CandidateSampler` is the part of :class:`~simulators.core.SimCore` that draws them.
"""

from __future__ import annotations

import numpy as np

_BITS_OF_TWO = int(np.array(2.0).view(np.int64))


class CandidateSampler:
    """Draws candidate lists from the catalog of a :class:`~simulators.core.SimCore`.

    A mixin: it reads the core's ``config``, ``rng``, ``popularity``, ``birth``,
    ``n_active``, ``step_count`` and ``_pop_new``, and keeps its own tables (``_n0``,
    ``_line_prob``, ``_line_pick``, ``_segment_cache``). :meth:`_init_sampler` builds them
    once, after the initial catalog exists.
    """

    def _init_sampler(self) -> None:
        """The candidate law, built once. Item i has weight ``0.7 / n + 0.3 * exp(pop_i) / P``
        (P: the sum of ``exp(pop)`` over the catalog), times ``fresh_boost`` while fresh. Items that arrive
        later all share the lowest popularity, so the law is a mixture of four parts: uniform
        and popularity-weighted over the initial items (a Walker alias table), uniform over the
        older arrivals, uniform over the fresh ones; only the part masses move over time."""
        n0 = self._n0 = self.n_active
        pop = np.exp(self.popularity[:n0])
        self._pop0_sum = float(pop.sum())
        self._exp_new = float(np.exp(self._pop_new))
        scaled = (pop * (n0 / pop.sum())).tolist()
        prob, alias = [1.0] * n0, list(range(n0))
        small = [i for i, p in enumerate(scaled) if p < 1.0]
        large = [i for i, p in enumerate(scaled) if p >= 1.0]
        while small and large:
            s_, l_ = small.pop(), large.pop()
            prob[s_], alias[s_] = scaled[s_], l_
            scaled[l_] -= 1.0 - scaled[s_]
            (small if scaled[l_] < 1.0 else large).append(l_)
        # One table over the whole draw line: columns [0, n0) are the alias table of the
        # popularity part, columns n0 + i are item i itself (probability 1).
        cap = self.config.max_items
        self._line_prob = np.concatenate([prob, np.ones(cap)])
        # column c's item is _line_pick[c], its alias _line_pick[len(_line_prob) + c]
        self._line_pick = np.concatenate([np.arange(n0), np.arange(cap),
                                          np.array(alias, dtype=np.int64), np.arange(cap)])

    def _first_fresh(self) -> int:
        """Index of the oldest fresh item (arrivals are stored in order of birth)."""
        n0 = self._n0
        if self.n_active == n0:
            return n0
        return n0 + int(np.searchsorted(self.birth[n0:self.n_active],
                                        self.step_count - self.config.fresh_steps,
                                        side="right"))

    def stable_for(self) -> int:
        """Steps from now during which the candidate law cannot change (at least 1)."""
        c = self.config
        steps = 1 << 30
        if c.new_item_every is not None and self.n_active < c.max_items:
            steps = c.new_item_every - self.step_count % c.new_item_every
        f = self._first_fresh()
        if f < self.n_active:
            steps = min(steps, int(self.birth[f]) + c.fresh_steps - self.step_count)
        return max(steps, 1)

    def _segments(self) -> tuple[list[float], list[float], list[float]]:
        """Edges on the uniform's scale, points on the draw line and slopes of the current
        law's segments (recomputed only when the catalog or its fresh part has changed)."""
        n, n0, f = self.n_active, self._n0, self._first_fresh()
        cached = self._segment_cache
        if cached is not None and cached[0] == n and cached[1] == f:
            return cached[2]
        total_pop = self._pop0_sum + (n - n0) * self._exp_new
        each_new = 0.7 / n + 0.3 * self._exp_new / total_pop
        widths = [0.3 * self._pop0_sum / total_pop, 0.7 * n0 / n, (f - n0) * each_new,
                  self.config.fresh_boost * (n - f) * each_new]
        ends = [n0, 2 * n0, n0 + f, n0 + n]
        edges, points, edge = [0.0], [0.0], 0.0
        for width, end in zip(widths, ends, strict=True):
            edge += width
            if width > 0.0:  # empty segments (no arrivals yet) drop out
                edges.append(edge)
                points.append(float(end))
        slopes = [(points[i + 1] - points[i]) / (edges[i + 1] - edges[i])
                  for i in range(len(edges) - 1)]
        self._segment_cache = (n, f, (edges, points, slopes))
        return edges, points, slopes

    def _draw_items(self, shape: tuple[int, int]) -> np.ndarray:
        """Item ids drawn with replacement from the candidate law.

        One uniform per draw, mapped piecewise-linearly onto the draw line: the popularity part
        onto alias columns [0, n0) (the fraction is the alias coin), the uniform parts onto
        items [0, n0), [n0, f) and [f, n), each segment as wide as its probability mass.
        """
        edges, points, slopes = self._segments()
        x = self.rng.random(shape) * edges[-1]
        if len(slopes) == 2:  # no arrivals: np.interp's arithmetic, without its search
            high = x - edges[1]
            high *= slopes[1]
            high += points[1]
            y = np.where(x >= edges[1], high, x * slopes[0])
        else:
            y = np.interp(x, edges, points)
        col = y.astype(np.int64)
        np.minimum(col, self._n0 + self.n_active - 1, out=col)
        y -= col
        alias = y >= self._line_prob.take(col)
        return self._line_pick.take(col + alias * len(self._line_prob))

    def draw_candidates(self, n: int) -> np.ndarray:
        """(n, K) distinct item ids per row, drawn by popularity (fresh items boosted).

        Draws 2K with replacement (see :meth:`_init_sampler`), keeps the first copy of each
        item, and takes K of those at random, in random order: the K with the smallest of
        independent uniform keys, ordered by key (rows with fewer than K distinct items, which
        are rare, are drawn again).
        """
        k = self.config.n_candidates
        width = 2 * k
        bits = (width - 1).bit_length()
        out, todo = None, None
        while True:
            m = n if todo is None else len(todo)
            draw = self._draw_items((m, width))
            draw.sort(axis=1)
            repeat = np.empty(draw.shape, dtype=bool)
            repeat[:, 0] = False
            np.equal(draw[:, 1:], draw[:, :-1], out=repeat[:, 1:])
            keys = self.rng.random(draw.shape)
            np.copyto(keys, 2.0, where=repeat)  # repeats sort after every first copy
            # Non-negative doubles sort as their bit patterns do: with the column in the low
            # bits of its key, one integer sort per row orders the keys and says where each
            # came from (two keys of a row equal but for those bits, a chance of about 2**-37
            # a row when K = 20, tie by column).
            packed = keys.view(np.int64)
            packed &= ~((1 << bits) - 1)
            packed |= np.arange(width)
            packed.sort(axis=1)
            ok = packed[:, k - 1] < _BITS_OF_TWO
            pick = packed[:, :k] & ((1 << bits) - 1)
            pick += np.arange(0, m * width, width)[:, None]
            picked = draw.take(pick)
            if todo is None:
                if ok.all():
                    return picked
                out, todo = np.empty((n, k), dtype=np.int64), np.arange(n)
            out[todo[ok]] = picked[ok]
            todo = todo[~ok]
            if not len(todo):
                return out
