"""Forgetting for the policies' models: a half-life, and a change detector that shortens it.

With equal weights a record counts ``1 / n`` after ``n`` others, so a long-running service
stops learning. Choosing the half-life: longer costs less on a stationary stream (keep it
above 20 D), shorter follows gradual drift sooner; abrupt changes are the detector's job.
The default (5,000 records) loses under 1% of reward against no forgetting on a stationary
stream (``tests/test_forgetting.py``); ``half_life=None`` keeps the stationary model.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
from river import drift

from policies.base import check_param

#: Default half-life of a record's weight, in records.
HALF_LIFE = 5000.0
#: Default speed-up of forgetting after a detected change, and its default length as a share
#: of the half-life: old records lose a factor ``2 ** (DRIFT_FACTOR * DRIFT_SHARE)`` (64).
DRIFT_FACTOR = 60.0
DRIFT_SHARE = 0.1
#: Page-Hinkley settings of the change detector (see :class:`Forgetting`): the drift each
#: record must exceed in ``z`` (bias) and in ``z^2`` (scale), the cumulative excess at which
#: it fires, the records each detector needs first, and the clip of ``z``.
DRIFT_DELTA = 0.2
DRIFT_SCALE_DELTA = 0.5
DRIFT_THRESHOLD = 50.0
DRIFT_MIN_RECORDS = 100
DRIFT_CLIP = 3.0


def make_forgetting(n_features: int, half_life, discount, drift_factor, drift_period
                    ) -> Forgetting | None:
    """The :class:`Forgetting` these (validated) parameters ask for, or ``None`` for a
    stationary model (``half_life`` None, or ``discount`` 1)."""
    if half_life is not None:
        check_param("half_life", half_life, low=1.0)
    if discount is not None:
        check_param("discount", discount, low=0.0, high=1.0, low_open=True)
    check_param("drift_factor", drift_factor, low=1.0)
    if drift_period is not None:
        check_param("drift_period", drift_period, low=1, integer=True)
    if discount == 1.0 or (discount is None and half_life is None):
        return None
    rate = -math.log(discount) if discount is not None else math.log(2.0) / half_life
    period = drift_period if drift_period is not None else max(
        1, round(DRIFT_SHARE * math.log(2.0) / rate))
    return Forgetting(n_features, rate, drift_factor, period)


class Forgetting:
    """The forgetting schedule of one model and the change detector that speeds it up.

    Each record gets a factor ``lam = exp(-rate)`` (``rate * drift_factor`` for ``period``
    records after a detected change) and ``refresh = (1 - lam) l2 D`` on a coordinate ``j``
    cycling over the D features: ``A <- lam A + x x^T + refresh e_j e_j^T`` keeps the prior
    part of ``A`` near ``l2 I``, so unexcited directions return to the prior instead of
    blowing up. A record learned when ``clock`` (the sum of rates) read ``c`` now weighs
    ``exp(c - clock)``; ``count`` is the records' total weight.

    The detector watches ``z = e / sqrt(s^2 (1 + q))``, ``e`` a record's error before it is learned,
    ``q`` its leverage ``x A^-1 x``, ``s^2`` the recent mean of ``e^2 / (1 + q)``: River
    Page-Hinkley on ``z`` clipped to +-``DRIFT_CLIP`` (a bias, both ways) and on ``z^2`` (a wider
    spread, up), unfaded (a faded sum fluctuates past any threshold). They are quiet for the first
    ``DRIFT_MIN_RECORDS + 2 D`` records, and ``period`` plus that many after each detection.

    Examples
    --------
    >>> f = Forgetting(n_features=2, rate=math.log(2) / 1000, drift_factor=8.0, period=500)
    >>> lam, refresh, j = f.next_record(prior=2.0)
    >>> round(lam ** 1000, 6), j, round(refresh, 6)
    (0.5, 0, 0.001386)
    >>> import random
    >>> rng = random.Random(0)
    >>> fired = [f.observe(rng.gauss(0 if t < 2000 else 1, 1), 0.0) for t in range(2500)]
    >>> fired.index(True) > 2000, f.detections, f.fast_left > 0
    (True, 1, True)
    """

    def __init__(self, n_features: int, rate: float, drift_factor: float, period: int):
        self.n_features, self.rate, self._lam = n_features, rate, math.exp(-rate)
        self.drift_factor, self.period = drift_factor, period
        self.t = 0  # records scheduled (the prior refresh cycles with it)
        self.count = 0.0  # their total weight now
        self.clock = 0.0
        self.fast_left = self.detections = 0
        # recency-weighted sum of e^2 / (1 + q), and of weights
        self._scale_sum = self._scale_weight = 0.0
        self.warm_up = DRIFT_MIN_RECORDS + 2 * n_features
        self.quiet = self.warm_up  # records before the detector watches
        self.detectors = _detectors()

    def next_record(self, prior: float) -> tuple[float, float, int]:
        """``(lam, refresh, j)`` for the next record learned, with ``prior`` = ``l2 D``."""
        if self.fast_left > 0:
            self.fast_left -= 1
            rate = self.rate * self.drift_factor
            lam = math.exp(-rate)
        else:
            rate, lam = self.rate, self._lam
        j = self.t % self.n_features
        self.t += 1
        self.clock += rate
        self.count = lam * self.count + 1.0
        return lam, (1.0 - lam) * prior, j

    def schedule(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray, a_inv: np.ndarray,
                 prior: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rates ``(lam, refresh, j)`` (arrays (N,)) of a mini-batch's records ``x`` (N,
        D), ``y`` (N,), each scheduled then observed against the model ``theta``, ``A^-1``
        that starts the batch."""
        errors = y - x @ theta
        leverage = np.einsum("ij,ij->i", x @ a_inv, x)
        rates = []
        for e, q in zip(errors.tolist(), leverage.tolist(), strict=True):
            rates.append(self.next_record(prior))
            self.observe(e, q)
        lams, refresh, js = zip(*rates, strict=True)
        return np.array(lams), np.array(refresh), np.array(js, dtype=np.int64)

    def observe(self, error: float, leverage: float) -> bool:
        """Feed one learned record's prediction error (made before it was learned) and
        leverage to the detector; True if it fires (forgetting then speeds up)."""
        spread = 1.0 + leverage if leverage > 0.0 else 1.0
        v = error * error / spread
        weight = self._scale_weight
        fired = False
        if self.quiet > 0:
            self.quiet -= 1
        elif weight > 0.0 and self.drift_factor != 1.0:
            s2 = self._scale_sum / weight * spread
            z = error / math.sqrt(s2) if s2 > 0.0 else math.copysign(DRIFT_CLIP, error)
            z = -DRIFT_CLIP if z < -DRIFT_CLIP else (DRIFT_CLIP if z > DRIFT_CLIP else z)
            bias, wide = self.detectors
            bias.update(z)
            wide.update(z * z)
            fired = bias.drift_detected or wide.drift_detected
        lam = self._lam
        self._scale_sum = lam * self._scale_sum + v
        self._scale_weight = lam * weight + 1.0
        if fired:
            self.detections += 1
            self.fast_left = self.period
            self.quiet = self.period + self.warm_up  # while the model learns the new world
            self.detectors = _detectors()
        return fired

    def __eq__(self, other) -> bool:  # (save/load tests: the detector's state included)
        return type(other) is Forgetting and pickle.dumps(self) == pickle.dumps(other)

    __hash__ = None


def weights_after(lams: np.ndarray) -> np.ndarray:
    """``prod(lams[k] for k > i)`` for each record ``i`` of a batch (N,): how much of a
    record's weight is left at the batch's end.

    >>> weights_after(np.array([0.5, 0.5, 0.9])).tolist()
    [0.45, 0.9, 1.0]
    """
    return np.append(np.cumprod(lams[:0:-1])[::-1], 1.0)


def forgotten(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lams: np.ndarray,
              refresh: np.ndarray, js: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A`` and ``b`` after records ``x`` (N, D), ``y`` (N,) with rates ``lams``,
    ``refresh``, ``js``: what ``A <- lam A + x x^T + refresh e_j e_j^T``, ``b <- lam b + y
    x`` give one record at a time, in a few matrix products (new arrays)."""
    after = weights_after(lams)
    keep = float(after[0] * lams[0])
    xw = x.T * after
    a = keep * a + xw @ x
    np.add.at(a.reshape(-1), js * (a.shape[0] + 1), after * refresh)
    return a, keep * b + xw @ y


def _detectors() -> tuple[drift.PageHinkley, drift.PageHinkley]:
    """Page-Hinkley on the standardized error (both ways) and on its square (up)."""
    return (drift.PageHinkley(min_instances=DRIFT_MIN_RECORDS, delta=DRIFT_DELTA,
                              threshold=DRIFT_THRESHOLD, alpha=1.0, mode="both"),
            drift.PageHinkley(min_instances=DRIFT_MIN_RECORDS, delta=DRIFT_SCALE_DELTA,
                              threshold=DRIFT_THRESHOLD, alpha=1.0, mode="up"))
