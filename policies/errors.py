"""The exceptions every Loopwise package raises on purpose, in the lowest package so all share
one hierarchy: a bad input is a :class:`ValidationError` reading ``field: reason (got value)``.
:mod:`engine.errors` adds the engine's own and re-exports these.
"""

from __future__ import annotations


class LoopwiseError(Exception):
    """Base class of every error Loopwise raises on purpose."""


class ValidationError(LoopwiseError, ValueError):
    """Bad input: names the field, the constraint and the value received.

    Examples
    --------
    >>> err = ValidationError("events[3].ts", "must be a finite number", "abc")
    >>> str(err), err.field
    ("events[3].ts: must be a finite number (got 'abc')", 'events[3].ts')
    >>> import pickle
    >>> str(pickle.loads(pickle.dumps(ValidationError("salt", "is required"))))
    'salt: is required'
    """

    _MISSING = object()

    def __init__(self, field: str, reason: str, value: object = _MISSING):
        if not field.isascii():  # a key a client sent may hold what UTF-8 cannot encode
            field = field.encode("utf-8", "backslashreplace").decode("utf-8")
        self.field, self.reason, self.value = field, reason, value
        text = repr(value)
        if len(text) > 80:  # a long value is cut short
            text = text[:77] + "..."
        got = "" if value is ValidationError._MISSING else f" (got {text})"
        super().__init__(f"{field}: {reason}{got}")

    def __reduce__(self):  # keep pickling (Ray, process pools) working with the custom __init__
        if self.value is ValidationError._MISSING:  # a fresh sentinel would print as a value
            return (type(self), (self.field, self.reason))
        return (type(self), (self.field, self.reason, self.value))


class ValidationTypeError(ValidationError, TypeError):
    """Bad input of the wrong type; a ``TypeError`` as well, as Python's own checks raise.

    Examples
    --------
    >>> err = ValidationTypeError("salt", "must be a string", None)
    >>> str(err), isinstance(err, ValidationError), isinstance(err, TypeError)
    ('salt: must be a string (got None)', True, True)
    """
