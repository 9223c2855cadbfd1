"""Features without a schema: arbitrary JSON objects -> a bounded-width numeric vector.

Personalizer and VW take features as JSON objects that nobody declares in advance; this
module turns them into model features the way they do:

- every top-level key whose value is an object is a *namespace*; top-level scalars go to
  the default namespace ``""``;
- a string is a categorical feature ``name=value`` of value 1; a boolean is the categorical
  ``name=true`` / ``name=false``; a number is the feature ``name`` with that value; ``null``
  is no feature;
- nested objects are flattened (``a.b``), arrays indexed (``a[0]``);
- a candidate's vector holds its own (action) features, the shared (context) features and
  every context x action pair (the user x item interactions), the pair's value the product;
- each feature lands in one of ``width`` slots by a stable hash of its name (BLAKE2b, never
  Python's randomized ``hash``), with a hashed sign so that collisions cancel on average
  instead of piling up. The same JSON gives the same vector in every process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from hashlib import blake2b

import numpy as np

from engine.checks import check_int
from engine.errors import ValidationError

#: Largest magnitude of a number in a feature object: a context x action product then stays
#: within the engine's bound on logged features (1e18).
MAX_NUMBER = 1e9
_HASHES_KEPT = 1 << 16  # feature name -> (slot, sign) cache entries kept


class JsonFeatures:
    """Hashes Personalizer-style feature objects into ``width`` numeric features.

    Parameters
    ----------
    width
        Number of hashed slots of the vector (the engine's ``item_features``).
    max_features
        The most flattened features one side (the context, or one action) may have.
    max_depth
        The deepest nesting of objects and arrays accepted.
    max_pairs
        The most context x action interactions one action may have (context features
        times the action's features).

    Examples
    --------
    >>> jf = JsonFeatures(width=16)
    >>> jf.flatten([{"device": "mobile", "user": {"age": 31, "vip": True}}], "contextFeatures")
    [('', 'device=mobile', 1.0), ('user', 'age', 31.0), ('user', 'vip=true', 1.0)]
    >>> phi = jf.vectors([{"device": "mobile"}], [[{"genre": "jazz"}], [{"genre": "rock"}]])
    >>> phi.shape, bool((phi[0] != phi[1]).any())
    ((2, 16), True)
    >>> jf.user_id([{"user": {"id": "u7"}}], "user.id")
    'u7'
    """

    def __init__(self, width: int, max_features: int = 256, max_depth: int = 8,
                 max_pairs: int = 4096):
        for name, value in (("width", width), ("max_features", max_features),
                            ("max_depth", max_depth), ("max_pairs", max_pairs)):
            check_int(name, value, 1)
        self.width = width
        self.max_features = max_features
        self.max_depth = max_depth
        self.max_pairs = max_pairs
        self._slots: dict[str, tuple[int, float]] = {}

    # ---- flattening ------------------------------------------------------------------
    def flatten(self, objects: object, where: str) -> list[tuple[str, str, float]]:
        """``(namespace, feature name, value)`` of a list of feature objects (``None``:
        none); errors name the field under ``where`` (``contextFeatures[0].user.age``)."""
        if objects is None:
            return []
        if isinstance(objects, (str, bytes, Mapping)) or not isinstance(objects, Sequence):
            raise ValidationError(where, "must be a list of feature objects", objects)
        out: list[tuple[str, str, float]] = []
        for i, obj in enumerate(objects):
            if not isinstance(obj, Mapping):
                raise ValidationError(f"{where}[{i}]", "must be an object of features", obj)
            for key, value in obj.items():
                path = f"{where}[{i}].{key}"
                if isinstance(value, Mapping):  # a namespace
                    for sub, inner in value.items():
                        self._walk(str(key), str(sub), inner, f"{path}.{sub}", 2, out)
                else:
                    self._walk("", str(key), value, path, 1, out)
        if len(out) > self.max_features:
            raise ValidationError(where, f"must hold at most {self.max_features} features "
                                  "once flattened", len(out))
        return out

    def _walk(self, ns: str, name: str, value: object, path: str, depth: int,
              out: list) -> None:
        """Append the features of one value (recursing into objects and arrays)."""
        if depth > self.max_depth:
            raise ValidationError(path, f"nests deeper than {self.max_depth} levels")
        if value is None or len(out) > self.max_features:  # past the limit: flatten() says so
            return
        if isinstance(value, bool):
            out.append((ns, f"{name}={'true' if value else 'false'}", 1.0))
        elif isinstance(value, str):
            out.append((ns, f"{name}={value}", 1.0))
        elif isinstance(value, (int, float)):
            try:
                x = float(value)
            except OverflowError:
                x = math.inf
            if not abs(x) <= MAX_NUMBER:  # NaN fails too
                raise ValidationError(path, f"must be a finite number of magnitude at most "
                                      f"{MAX_NUMBER:g}", value)
            out.append((ns, name, x))
        elif isinstance(value, Mapping):
            for sub, inner in value.items():
                self._walk(ns, f"{name}.{sub}", inner, f"{path}.{sub}", depth + 1, out)
        elif isinstance(value, (list, tuple)):
            for j, inner in enumerate(value):
                self._walk(ns, f"{name}[{j}]", inner, f"{path}[{j}]", depth + 1, out)
        else:
            raise ValidationError(path, "must be a string, number, boolean, object, array "
                                  "or null", value)

    # ---- hashing ---------------------------------------------------------------------
    def _slot(self, key: str) -> tuple[int, float]:
        """(slot, sign) of a feature key: a stable 64-bit BLAKE2b hash, cached."""
        hit = self._slots.get(key)
        if hit is None:
            h = int.from_bytes(blake2b(key.encode("utf-8", "surrogatepass"),
                                       digest_size=8).digest(), "little")
            hit = (h % self.width, 1.0 if h >> 63 else -1.0)
            if len(self._slots) >= _HASHES_KEPT:
                self._slots.clear()
            self._slots[key] = hit
        return hit

    def vectors(self, context: object, actions: Sequence[object],
                context_where: str = "contextFeatures",
                action_where: Sequence[str] | None = None) -> np.ndarray:
        """The (K, width) vectors of K actions' feature lists under one context: each
        action's features, the context's, and every context x action product.
        ``action_where[k]`` names action k's features in errors."""
        ctx = [(f"{ns}\x1f{name}", value) for ns, name, value
               in self.flatten(context, context_where)]
        slot = self._slot
        shared = self._sum([slot(f"c\x1f{key}") for key, _ in ctx], [v for _, v in ctx])
        out = np.empty((len(actions), self.width))
        for k, feats in enumerate(actions):
            where = action_where[k] if action_where is not None else f"actions[{k}].features"
            own = self.flatten(feats, where)
            if len(own) * len(ctx) > self.max_pairs:
                raise ValidationError(where, f"its features times the context's make "
                                      f"{len(own) * len(ctx)} interactions; at most "
                                      f"{self.max_pairs}")
            slots, values = [], []
            for ns_a, name_a, value_a in own:
                key_a = f"{ns_a}\x1f{name_a}"
                slots.append(slot(f"a\x1f{key_a}"))
                values.append(value_a)
                for key_c, value_c in ctx:
                    slots.append(slot(f"x\x1f{key_c}\x1f{key_a}"))
                    values.append(value_c * value_a)
            out[k] = shared + self._sum(slots, values)
        return out

    def _sum(self, slots: list[tuple[int, float]], values: list[float]) -> np.ndarray:
        """The (width,) vector of signed values summed into their slots."""
        if not slots:
            return np.zeros(self.width)
        index, sign = zip(*slots, strict=True)
        return np.bincount(index, weights=np.multiply(sign, values), minlength=self.width)

    @staticmethod
    def categories(objects: object, limit: int = 32) -> list[str]:
        """Top-level categorical (string) features of feature objects as ``key=value``
        strings, at most ``limit``: an action's topics, which its users' profile interests
        are kept about."""
        out: list[str] = []
        for obj in objects if isinstance(objects, list) else ():
            if isinstance(obj, Mapping):
                for key, value in obj.items():
                    if isinstance(value, str) and len(out) < limit:
                        out.append(f"{key}={value}"[:256])
        return out

    @staticmethod
    def user_id(context: object, path: str | None) -> str | None:
        """The value at a dotted ``path`` (``user.id``) of any of the context's objects, as
        a string (a string or an integer there; else ``None``)."""
        if not path or not isinstance(context, list):
            return None
        keys = path.split(".")
        for obj in context:
            value = obj
            for key in keys:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, str) and value:
                return value[:256]
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None
