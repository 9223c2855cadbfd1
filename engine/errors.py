"""Exceptions raised on purpose by Loopwise. Messages say what was wrong and how to fix it.

Every bad input is a :class:`ValidationError`, ``field: reason (got value)``, shared by every
package from :mod:`policies.errors`; the engine adds its errors for decisions and the store."""

from __future__ import annotations

from policies.errors import LoopwiseError, ValidationError, ValidationTypeError

__all__ = ["LoopwiseError", "StoreError", "UnknownDecisionError", "ValidationError",
           "ValidationTypeError"]


class UnknownDecisionError(LoopwiseError, KeyError):
    """A reward named a decision id that this engine never issued (or that was forgotten)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else "unknown decision"


class StoreError(LoopwiseError):
    """The data directory cannot be used as asked (e.g. opened with a different shard count)."""
