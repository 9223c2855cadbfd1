"""Input checks shared by the A/B statistics modules.

Every message has one format, ``name: constraint (got value)``, the format used by
``engine.errors.ValidationError``. Plain ``ValueError``/``TypeError`` are raised so that this
package stays importable without the engine.
"""

from __future__ import annotations

import math
from numbers import Real


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(name: str, constraint: str, value: object, kind: type[Exception] = ValueError) -> None:
    """Raise ``kind`` with the shared message format."""
    raise kind(f"{name}: {constraint} (got {_short(value)})")


def check_real(name: str, value: object) -> float:
    """Return ``value`` as a float, refusing bools and non-numbers with ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        fail(name, "must be a real number", value, TypeError)
    return float(value)  # type: ignore[arg-type]


def check_probability(name: str, value: object, *, open_interval: bool = True) -> float:
    """Return ``value`` as a float in (0, 1) (or [0, 1] when ``open_interval`` is false)."""
    x = check_real(name, value)
    ok = 0.0 < x < 1.0 if open_interval else 0.0 <= x <= 1.0
    if not ok:
        fail(name, "must lie in (0, 1)" if open_interval else "must lie in [0, 1]", value)
    return x


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a finite float > 0."""
    x = check_real(name, value)
    if not (math.isfinite(x) and x > 0.0):
        fail(name, "must be a finite number > 0", value)
    return x


def check_name(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string."""
    if not isinstance(value, str):
        fail(name, "must be a string", value, TypeError)
    if not value.strip():  # type: ignore[union-attr]
        fail(name, "must be a non-empty string", value)
    return value  # type: ignore[return-value]
