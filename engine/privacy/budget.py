"""The privacy budget of one data directory: a ledger of every DP release, and its total.

The ledger is a table (``dp_ledger``: id, time, epsilon, what) in the data directory's
database; the total is its ``meta`` key ``dp_total_epsilon``. A release is charged before
its figures are computed, in one transaction with the check, so two releases can never both
fit into what only one fits (and a release that fails later still counts: failing safe).
"""

from __future__ import annotations

import time

from engine.errors import LoopwiseError
from engine.privacy.dp import check_epsilon

#: The total epsilon of a data directory whose operator set none.
DEFAULT_TOTAL_EPSILON = 2.0
TOTAL_KEY = "dp_total_epsilon"
#: Slack for floating-point sums of charges (0.1 + 0.2 fits in a total of 0.3).
TOLERANCE = 1e-9
LEDGER = ("CREATE TABLE IF NOT EXISTS dp_ledger (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
          "epsilon REAL NOT NULL, what TEXT NOT NULL)")


class BudgetExceeded(LoopwiseError):
    """A release would spend more epsilon than the data directory has left."""


class Budget:
    """The privacy budget of the data directory of ``store`` (an :class:`engine.store.Store`).

    ``total``: set the directory's total epsilon (an operator's decision, recorded in the
    ledger with epsilon 0); ``None`` keeps the recorded one, or :data:`DEFAULT_TOTAL_EPSILON`.

    Examples
    --------
    >>> import tempfile
    >>> from engine.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d)
    ...     budget = Budget(store, total=1.0)
    ...     budget.charge(0.75, "event_types")
    ...     try:
    ...         budget.charge(0.5, "variants")
    ...     except BudgetExceeded as exc:
    ...         refused = str(exc)
    ...     left = budget.left()
    ...     store.close()
    >>> left, refused.split(";")[0]
    (0.25, 'dp budget: this release needs epsilon 0.5 but 0.25 of 1.0 is left')
    """

    def __init__(self, store, total: float | None = None, clock=time.time):
        self.store = store
        self.clock = clock
        with store.transaction() as db:
            db.execute(LEDGER)
        if total is not None:
            total = check_epsilon(total, "dp_total_epsilon")
            if store.get_meta(TOTAL_KEY) != repr(total):
                with store.transaction() as db:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (TOTAL_KEY, repr(total)))
                    db.execute("INSERT INTO dp_ledger (ts, epsilon, what) VALUES (?, 0, ?)",
                               (float(clock()), f"total set to {total!r}"))

    @property
    def total(self) -> float:
        return float(self.store.get_meta(TOTAL_KEY) or DEFAULT_TOTAL_EPSILON)

    def spent(self) -> float:
        return float(self.store.db.execute("SELECT COALESCE(SUM(epsilon), 0) FROM dp_ledger")
                     .fetchone()[0])

    def left(self) -> float:
        return max(0.0, self.total - self.spent())

    def charge(self, epsilon: float, what: str) -> None:
        """Record a release of ``epsilon``, or raise :class:`BudgetExceeded` (nothing
        recorded) when it does not fit in what is left."""
        epsilon = check_epsilon(epsilon)
        with self.store.transaction() as db:
            spent, total = self.spent(), self.total
            if spent + epsilon > total + TOLERANCE:
                raise BudgetExceeded(
                    f"dp budget: this release needs epsilon {epsilon!r} but "
                    f"{max(0.0, total - spent)!r} of {total!r} is left; ask for a smaller "
                    "epsilon, or raise the data directory's total (dp_total_epsilon) if you "
                    "accept the added privacy loss")
            db.execute("INSERT INTO dp_ledger (ts, epsilon, what) VALUES (?, ?, ?)",
                       (float(self.clock()), epsilon, what))

    def ledger(self) -> list[dict]:
        """Every release and total change, oldest first: ``{"id", "ts", "epsilon", "what"}``."""
        rows = self.store.db.execute("SELECT id, ts, epsilon, what FROM dp_ledger ORDER BY id")
        return [dict(zip(("id", "ts", "epsilon", "what"), r, strict=True)) for r in rows]

    def summary(self) -> dict:
        spent, total = self.spent(), self.total
        return {"total": total, "spent": spent, "left": max(0.0, total - spent)}


