"""Checks every face of the engine applies at its boundary (Python, HTTP, Ray, replay).

A value accepted here can be stored, exported and served back: strings encode to UTF-8 (no
lone surrogate), hold no NUL and have a bounded length; numbers are finite and in their domain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

from engine.errors import ValidationError, ValidationTypeError

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 10_000
MAX_LIST_LENGTH = 256
#: The earliest event time accepted by an engine on the wall clock: 2000-01-01T00:00:00Z.
MIN_WALL_TIME = 946_684_800.0

_SURROGATE = ("must be valid Unicode: it holds a lone surrogate (half of a UTF-16 pair, "
              "as when a string is cut inside an emoji), which cannot be stored as UTF-8")
_NUL = "must not contain NUL characters"


def text_problem(value: str) -> str | None:
    """Why the string ``value`` cannot be stored as it is (``None``: it can).

    Examples
    --------
    >>> text_problem("jazz"), text_problem("café ☕")
    (None, None)
    >>> text_problem("\\ud83d")[:28]
    'must be valid Unicode: it ho'
    >>> text_problem("a\\x00b")
    'must not contain NUL characters'
    """
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE
    return _NUL if "\x00" in value else None


def storable(value: object) -> bool:
    """Whether ``value`` is a non-empty string of at most :data:`MAX_ID_LENGTH` characters
    that :func:`text_problem` accepts (the fast test of ids, topics and tags)."""
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and (
        value.isascii() and "\x00" not in value or text_problem(value) is None)


def check_string(value: object, where: str, *, max_length: int = MAX_ID_LENGTH,
                 required: bool = True, allow_empty: bool = False) -> str | None:
    """``value`` as a checked string, non-empty unless ``allow_empty`` (``None``: absent).

    Examples
    --------
    >>> check_string("u1", "user_id")
    'u1'
    >>> check_string("\\ud83d", "topics[0]")
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: topics[0]: must be valid Unicode: it holds a lone surrogate (half of a UTF-16 pair, as when a string is cut inside an emoji), which cannot be stored as UTF-8 (got '\\ud83d')
    """
    if value is None:
        if required:
            raise ValidationError(where, "is required")
        return None
    if not isinstance(value, str) or not (value or allow_empty):
        raise ValidationError(where, "must be a string" if allow_empty
                              else "must be a non-empty string", value)
    if len(value) > max_length:
        raise ValidationError(where, f"must be at most {max_length} characters", len(value))
    problem = text_problem(value)
    if problem is not None:
        raise ValidationError(where, problem, value)
    return value


def check_strings(value: object, where: str) -> tuple[str, ...]:
    """A list of checked strings (topics, tags) as a tuple; ``None`` gives ``()``."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(where, "must be a list of strings", value)
    if len(value) > MAX_LIST_LENGTH:
        raise ValidationError(where, f"must hold at most {MAX_LIST_LENGTH} entries", len(value))
    for i, v in enumerate(value):
        check_string(v, f"{where}[{i}]")
    return tuple(value)


def is_number(x: object) -> bool:
    """A finite int or float (not a bool)."""
    if type(x) is float:  # (the common case, without the two isinstance tests)
        return math.isfinite(x)
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def check_number(name: str, value: object, low: float | None = None,
                 high: float | None = None, strict: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``[low, high]`` (``strict``: > low).

    Examples
    --------
    >>> check_number("value", 2, low=0.0)
    2.0
    >>> check_number("value", 1e308, low=-1e6, high=1e6)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: value: must lie in [-1000000.0, 1000000.0] (got 1e+308)
    """
    if not is_number(value):
        raise ValidationError(name, "must be a finite number", value)
    if high is not None and low is not None and not low <= value <= high:
        raise ValidationError(name, f"must lie in [{low}, {high}]", value)
    if low is not None and (value < low or (strict and value <= low)):
        raise ValidationError(name, f"must be {'>' if strict else '>='} {low}", value)
    if high is not None and value > high:
        raise ValidationError(name, f"must be <= {high}", value)
    return float(value)


def check_real(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool); ``nan`` and ``inf`` pass.

    Examples
    --------
    >>> check_real("theta0", 1), check_real("theta0", float("inf"))
    (1.0, inf)
    >>> check_real("theta0", "1")
    Traceback (most recent call last):
    ...
    policies.errors.ValidationTypeError: theta0: must be a real number (got '1')
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValidationTypeError(name, "must be a real number", value)
    return float(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number > 0.

    Examples
    --------
    >>> check_positive("tau", -0.1)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: tau: must be a finite number > 0 (got -0.1)
    """
    x = check_real(name, value)
    if not (math.isfinite(x) and x > 0.0):
        raise ValidationError(name, "must be a finite number > 0", value)
    return x


def check_probability(name: str, value: object, *, open_interval: bool = True) -> float:
    """``value`` as a float in (0, 1), or in [0, 1] when ``open_interval`` is false.

    Examples
    --------
    >>> check_probability("alpha", 0.05)
    0.05
    >>> check_probability("alpha", 1.5)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: alpha: must lie in (0, 1) (got 1.5)
    """
    x = check_real(name, value)
    if not (0.0 < x < 1.0 if open_interval else 0.0 <= x <= 1.0):
        raise ValidationError(name, "must lie in (0, 1)" if open_interval else "must lie in [0, 1]",
                              value)
    return x


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) >= ``low``; one of another
    type raises :class:`~engine.errors.ValidationTypeError`.

    Examples
    --------
    >>> check_int("min_n", 5, 2)
    5
    >>> check_int("min_n", 1, 2)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: min_n: must be an integer >= 2 (got 1)
    """
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, Integral)):
        raise ValidationTypeError(name, f"must be an integer >= {low}", value)
    if value < low:
        raise ValidationError(name, f"must be an integer >= {low}", value)
    return int(value)


def check_keys(mapping: Mapping, allowed: Sequence[str], where: str) -> None:
    """Refuse a key of ``mapping`` that is not in ``allowed``, naming it under ``where``."""
    for key in mapping:
        if key not in allowed:
            raise ValidationError(f"{where}.{key}", f"unknown setting; allowed: {list(allowed)}")


def settings_from(cls, mapping: object, where: str, what: str):
    """``cls(**mapping)`` for a dataclass of settings; errors name the key under ``where``
    (``engine.wait_window: must be >= 0.0 (got -1)``), an unknown one with the allowed."""
    if not isinstance(mapping, Mapping):
        raise ValidationTypeError(where, f"must be a mapping of {what}", mapping)
    check_keys(mapping, sorted(f.name for f in dataclasses.fields(cls) if f.init), where)
    try:
        return cls(**mapping)
    except ValidationError as err:
        raise type(err)(f"{where}.{err.field}", err.reason, err.value) from None
