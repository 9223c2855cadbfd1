"""River's Page-Hinkley change detector with a leaner ``update`` (same state, same floats)."""

from __future__ import annotations

from river import drift


class PageHinkley(drift.PageHinkley):
    """:class:`river.drift.PageHinkley` whose ``update`` restates River's: the same
    floating-point operations in the same order on the same attributes, without the calls
    to the running mean's methods and the detector's properties (a profile feeds one
    detector per event). ``tests/test_profile.py`` checks it against River's on a stream
    with drifts and resets.

    Examples
    --------
    >>> from river import drift
    >>> ours = PageHinkley(min_instances=5, delta=0.05, threshold=1.0, mode="up")
    >>> ref = drift.PageHinkley(min_instances=5, delta=0.05, threshold=1.0, mode="up")
    >>> fired = []
    >>> for x in [0.0] * 20 + [1.0] * 10:
    ...     ours.update(x)
    ...     ref.update(x)
    ...     fired.append(ours.drift_detected)
    ...     assert ours.drift_detected == ref.drift_detected
    >>> fired.index(True)
    21
    """

    def update(self, x):
        if self._drift_detected:
            self._reset()
        mean = self._x_mean  # river.stats.Mean.update(x), w = 1
        mean.n += 1.0
        mean._mean += (1.0 / mean.n) * (x - mean._mean)
        dev = x - mean._mean
        alpha = self.alpha
        increase = alpha * self._sum_increase + dev - self.delta
        decrease = alpha * self._sum_decrease + dev + self.delta
        self._sum_increase = increase
        self._sum_decrease = decrease
        if increase < self._min_increase:
            self._min_increase = increase
        if decrease > self._max_decrease:
            self._max_decrease = decrease
        if mean.n >= self.min_instances:
            self._drift_detected = self._test_drift(increase - self._min_increase,
                                                    self._max_decrease - decrease)
