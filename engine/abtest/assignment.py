"""Sticky assignment of users to variants by a salted hash of the user id."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from engine.checks import check_positive, check_string
from engine.errors import ValidationError, ValidationTypeError

_SEP = b"\x1f"  # unit separator: ("ab", "c") and ("a", "bc") hash differently


def check_name(name: str, value: object) -> str:
    """``value`` if it is a string the engine accepts as an id (see
    :func:`engine.checks.check_string`); another type raises a ``TypeError``."""
    if not isinstance(value, str):
        raise ValidationTypeError(name, "must be a string", value)
    return check_string(value, name)  # type: ignore[return-value]


def validate_weights(variants: Mapping[str, float], name: str = "variants") -> dict[str, float]:
    """Check a traffic split and return it normalized to sum to one, in the given order.

    Weights are relative (``{"a": 1, "b": 3}`` sends a quarter of users to ``a``), each
    finite and > 0; names are non-empty strings. ``name`` is the parameter named in errors.

    Examples
    --------
    >>> validate_weights({"control": 1, "treatment": 3})
    {'control': 0.25, 'treatment': 0.75}
    >>> validate_weights({"a": -1.0})
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: variants['a']: must be a finite number > 0 (got -1.0)
    """
    if not isinstance(variants, Mapping):
        raise ValidationTypeError(name, "must be a mapping of variant name to traffic weight",
                                  variants)
    if len(variants) == 0:
        raise ValidationError(name, "must name at least one variant", variants)
    weights: dict[str, float] = {}
    for key, value in variants.items():
        check_name(f"{name} key", key)
        weights[key] = check_positive(f"{name}[{key!r}]", value)
    total = math.fsum(weights.values())
    return {key: w / total for key, w in weights.items()}


def hash_unit(user_id: str, salt: str) -> float:
    """Map ``(salt, user_id)`` to a number in [0, 1), identical in every process.

    The first 53 bits of ``blake2b(salt + "\\x1f" + user_id)`` (8-byte digest) divided by
    2**53. Python's ``hash()`` is salted per process and is never used.

    Examples
    --------
    >>> hash_unit("user-1", "exp-1") == hash_unit("user-1", "exp-1")
    True
    >>> 0.0 <= hash_unit("user-1", "exp-2") < 1.0
    True
    """
    digest = hashlib.blake2b(salt.encode("utf-8") + _SEP + user_id.encode("utf-8"),
                             digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def assign_variant(user_id: str, variants: Mapping[str, float], salt: str) -> str:
    """Assign a user to a variant, stickily: same user, split and salt give the same variant.

    The user's :func:`hash_unit` is located in the cumulative normalized weights
    (:func:`validate_weights`), taken in the mapping's order. A new salt reshuffles everyone
    (use one per experiment; it may be empty); changing weights moves only the users whose
    hash falls in the moved band.

    Examples
    --------
    >>> split = {"control": 0.5, "treatment": 0.5}
    >>> v = assign_variant("user-42", split, salt="ranker-v2")
    >>> v in split and v == assign_variant("user-42", split, salt="ranker-v2")
    True
    """
    check_name("user_id", user_id)
    if not isinstance(salt, str):
        raise ValidationTypeError("salt", "must be a string", salt)
    u, cumulative = hash_unit(user_id, salt), 0.0
    for key, w in validate_weights(variants).items():
        cumulative += w
        if u < cumulative:
            return key
    return key  # rounding left the last cumulative weight a hair below 1
