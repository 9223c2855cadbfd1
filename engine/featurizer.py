"""Featurizer: profile x candidate items x request context -> action-dependent features.

The layout of one candidate's row in ``phi`` (see :attr:`Featurizer.feature_names`)::

    [bias | user x item interactions | user features | item features
          | item features x context | topic affinity x context]

Interactions come from the user's shard (topic/tag/keyword affinity, latent-factor score,
topic exposure); item features come with each candidate; context comes with the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as _json_string
from operator import is_, itemgetter

import numpy as np

from engine import kernels
from engine.checks import check_string, check_strings
from engine.errors import ValidationError
from engine.session import SESSION_FEATURES
from engine.shard import INTERACTION_FEATURES, USER_FEATURES, Candidate, CandidateSet


class Featurizer:
    """Builds ``phi`` (B, K, D) and ``mask`` (B, K) for a batch of rank requests.

    Parameters
    ----------
    item_features
        Length of each candidate's numeric ``features`` list (0: none).
    context_features
        Names of the numeric context features a request may carry (missing ones are 0).
    max_candidates
        Largest number of candidates one request may rank.
    session_features
        The user features end with the user's session state: the profile's
        :data:`engine.session.SESSION_FEATURES`, then the session's trace of item features
        (:class:`engine.session.SessionTraces`, ``session_reward*item_j``).

    Examples
    --------
    >>> f = Featurizer(item_features=2, context_features=("mobile",))
    >>> f.n_features
    15
    >>> cands, items = f.prepare_candidates([{"id": "a", "features": [1.0, 0.5]}, "b"])
    >>> items.tolist()
    [[1.0, 0.5], [0.0, 0.0]]
    >>> f.context_vector({"mobile": 1}).tolist()
    [1.0]
    """

    def __init__(self, item_features: int = 0, context_features: Sequence[str] = (),
                 max_candidates: int = 1000, session_features: bool = False):
        if isinstance(item_features, bool) or not isinstance(item_features, int) or item_features < 0:
            raise ValidationError("item_features", "must be an integer >= 0", item_features)
        if isinstance(context_features, str) or not all(
                isinstance(c, str) and c for c in context_features):
            raise ValidationError("context_features", "must be a list of non-empty names",
                                  context_features)
        if len(set(context_features)) != len(context_features):
            raise ValidationError("context_features", "names must be unique", context_features)
        if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
            raise ValidationError("max_candidates", "must be an integer >= 1", max_candidates)
        self.item_features = item_features
        self.context_features = tuple(context_features)
        if not isinstance(session_features, bool):
            raise ValidationError("session_features", "must be true or false", session_features)
        self.max_candidates = max_candidates
        self.session_features = session_features
        traces = [f"session_reward*item_{j}" for j in range(item_features)]
        self._user_names = (*USER_FEATURES,
                            *((*SESSION_FEATURES, *traces) if session_features else ()))
        self._ctx_index = {name: i for i, name in enumerate(self.context_features)}
        self._views: dict[str, tuple] = {}  # item id -> cache entry (see _check)
        self._lists: dict[tuple, tuple | None] = {}  # ids -> a list's result (see _memo)
        d_i, d_c = item_features, len(self.context_features)
        #: Width D of a candidate's row of ``phi``.
        self.n_features = 1 + len(INTERACTION_FEATURES) + len(self._user_names) + d_i \
            + d_i * d_c + d_c
        #: The context vector of a request without one (shared: read only).
        self.no_context = np.zeros(len(self.context_features))
        self.no_context.flags.writeable = False

    @property
    def feature_names(self) -> list[str]:
        items = [f"item_{j}" for j in range(self.item_features)]
        return (["bias", *INTERACTION_FEATURES, *(f"user_{u}" for u in self._user_names), *items,
                 *(f"{i}*{c}" for i in items for c in self.context_features),
                 *(f"topic_affinity*{c}" for c in self.context_features)])

    @property
    def item_columns(self) -> slice:
        """Where a candidate's item features lie in its row of ``phi``."""
        start = 1 + len(INTERACTION_FEATURES) + len(self._user_names)
        return slice(start, start + self.item_features)


    # ---- request parsing -------------------------------------------------------------
    def prepare_candidates(self, candidates: object, where: str = "candidates"
                           ) -> tuple[CandidateSet, np.ndarray]:
        """Validate a request's candidates; return shard-side views and item features (K, d_i).

        Views are kept per item id: an id seen before with topics and tags equal (by value)
        to the request's gets the view built then, unchecked again (a view is what its id,
        topics and tags make), so a list of known items costs a few C-level passes. A list
        that recurs (a pool re-ranked for many users) is answered from its own result, kept
        from its second sighting on and returned only to a list equal to it by value: the
        same views and (read-only) item features this method computed for it.
        """
        if type(candidates) is not list and (isinstance(candidates, (str, bytes, Mapping))
                                             or not isinstance(candidates, Sequence)):
            raise ValidationError(where, "must be a list of candidates (ids or objects)", candidates)
        if not candidates:
            raise ValidationError(where, "must hold at least one candidate", candidates)
        if len(candidates) > self.max_candidates:
            raise ValidationError(where, f"must hold at most {self.max_candidates} candidates",
                                  len(candidates))
        key, memo = self._memo(candidates)
        if memo is not None:
            return memo
        ids, topics, tags, rows, problems = _fields(candidates, where)
        entries = self._known(ids, topics, tags)
        if entries is None:  # some item is new, changed or bad: checked in order
            entries = self._check(ids, topics, tags, problems, where)
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for k, item_id in enumerate(ids):
                if item_id in seen:
                    raise ValidationError(f"{where}[{k}].id", "duplicate candidate id", item_id)
                seen.add(item_id)
        views = CandidateSet([*map(_VIEW, entries)],
                             (tuple(ids), [*map(_TOPIC_KEY, entries)], any(map(_HAS_TAGS, entries)),
                              tuple(map(_JSON_ID, entries))))
        items = self._item_features(rows, where)
        if key is not None:
            self._remember(key, candidates, rows, views, items)
        return views, items

    def _memo(self, candidates: list) -> tuple[tuple | None, tuple | None]:
        """(the list's key, its kept result if the list equals the one kept) — the key is
        its ids, ``None`` for a list that is not plain dicts with hashable ids."""
        try:
            key = tuple(map(_ID, candidates))
            kept = self._lists.get(key)
            if kept is not None and kept[0] == candidates:  # one C-level comparison
                return key, kept[1]
        except Exception:  # noqa: BLE001 - not dicts, no id, an unhashable or odd value
            return None, None
        return key, None

    def _remember(self, key: tuple, candidates: list, rows: list, views, items) -> None:
        """Note a list's first sighting (its ids only: a stream of lists that never recur
        keeps nothing else); keep its result at the second, if it can be compared by value
        later (plain dicts, features lists of plain numbers)."""
        if key not in self._lists:
            if len(self._lists) >= 8192:
                self._lists.clear()
            self._lists[key] = None
        elif {*map(type, candidates)} == _ONLY_DICTS and all(map(_numbers_only, rows)):
            items.flags.writeable = False  # shared by every request with this list
            copy = [{k: _frozen(v) for k, v in c.items()} for c in candidates]
            self._lists[key] = (copy, (views, items))

    def _known(self, ids: list, topics: list, tags: list) -> list[tuple] | None:
        """The cache entries of the candidates when every one is known with equal topics
        and tags (else None)."""
        if not {*map(type, ids)} == _ONLY_STR or not {*map(type, topics), *map(type, tags)} <= _PLAIN:
            return None
        entries = [*map(self._views.get, ids)]
        if None in entries or [*map(_TOPICS, entries)] != topics \
                or [*map(_TAGS, entries)] != tags:
            return None
        return entries

    def _check(self, ids: list, topics: list, tags: list, problems: list, where: str
               ) -> list[tuple]:
        """Every candidate's cache entry, checking (and keeping) those not already known,
        in order: the first problem raised is the first candidate's."""
        cache, entries = self._views, []
        for k, item_id in enumerate(ids):
            if problems[k] is not None:
                raise problems[k]
            hit = cache.get(item_id) if type(item_id) is str else None
            if hit is None or type(topics[k]) not in _PLAIN or type(tags[k]) not in _PLAIN \
                    or hit[0] != topics[k] or hit[1] != tags[k]:
                check_string(item_id, f"{where}[{k}].id")
                view = Candidate(item_id,
                                 check_strings(_listed(topics[k]), f"{where}[{k}].topics"),
                                 check_strings(_listed(tags[k]), f"{where}[{k}].tags"))
                if len(cache) >= 200_000:
                    cache.clear()
                hit = cache[item_id] = (_frozen(topics[k]), _frozen(tags[k]), view,
                                        view.topic_key, bool(view.tag_keys),
                                        _json_string(item_id))
            entries.append(hit)
        return entries

    def _item_features(self, rows: list, where: str) -> np.ndarray:
        """The candidates' item features (K, d_i), from their ``features`` (None: zeros)."""
        if self.item_features or any(r is not None for r in rows):
            return self._item_matrix(rows, where)
        return np.zeros((len(rows), 0))

    def _item_matrix(self, rows: list, where: str) -> np.ndarray:
        """Stack candidates' features (None: zeros); one vectorized check, then a slow pass
        only to name the culprit when something is wrong."""
        d_i = self.item_features
        if not any(map(is_, rows, repeat(None))):  # (identity: rows may be arrays)
            # one flat list to numpy (it converts faster than nested lists); no dtype given:
            # numpy would turn the string "1.5" into a number
            try:
                items = np.array([*chain.from_iterable(rows)]) \
                    if {*map(len, rows)} == {d_i} else None
            except (TypeError, ValueError):
                items = None
            if items is not None and items.dtype.kind in _NUMERIC_KINDS \
                    and items.ndim == 1:  # (not rows of rows: the check below names them)
                items = items.reshape(len(rows), d_i).astype(float, copy=False)
                if _within_bound(items):
                    return items
        items = np.zeros((len(rows), d_i))
        for k, feats in enumerate(rows):
            if feats is None:
                continue
            if isinstance(feats, (str, bytes)) or not isinstance(feats, (Sequence, np.ndarray)) \
                    or len(feats) != d_i:
                raise ValidationError(f"{where}[{k}].features", f"must be a list of {d_i} numbers",
                                      feats)
            try:
                row = np.asarray(feats)
            except (TypeError, ValueError):
                row = None
            if row is None or row.dtype.kind not in _NUMERIC_KINDS:
                raise ValidationError(f"{where}[{k}].features", "must hold numbers only", feats)
            if row.shape != (d_i,) or not _within_bound(row.astype(float)):
                raise ValidationError(f"{where}[{k}].features", _BOUND_REASON, feats)
            items[k] = row
        return items

    def context_vector(self, context: object, where: str = "context") -> np.ndarray:
        if context is None:
            return self.no_context
        vec = np.zeros(len(self.context_features))
        if not isinstance(context, Mapping):
            raise ValidationError(where, "must be a mapping of feature names to numbers", context)
        for name, value in context.items():
            idx = self._ctx_index.get(name)
            if idx is None:
                raise ValidationError(f"{where}.{name}",
                                      f"unknown context feature; declared: {list(self.context_features)}")
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not abs(value) <= MAX_FEATURE:  # NaN fails
                raise ValidationError(f"{where}.{name}", _BOUND_REASON, value)
            vec[idx] = value
        return vec

    # ---- assembly --------------------------------------------------------------------
    def build(self, users: Sequence[np.ndarray], interactions: Sequence[np.ndarray],
              items: Sequence[np.ndarray], contexts: Sequence[np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stack B requests into ``phi`` (B, K_max, D) float64 and ``mask`` (B, K_max) bool,
        ``None`` where no request is padded (every candidate exists: the policies' and the
        draw's plain case); padding rows are zeros."""
        ks = [*map(len, interactions)]
        k_max = max(ks)
        phi = np.empty((len(ks), k_max, self.n_features))  # the kernel writes every column
        for r, k in enumerate(ks):
            kernels.fill_features(phi[r, :k], users[r], interactions[r], items[r], contexts[r])
        if min(ks) == k_max:
            return phi, None
        mask = np.arange(k_max) < np.array(ks)[:, None]
        phi[~mask] = 0.0
        return phi, mask


#: Largest magnitude of an item feature or a context value. Decisions log their features as
#: float32 (at most 3.4e38), item features times context values included, so anything
#: larger would be logged as infinity and poison learning after a restart.
MAX_FEATURE = 1e18
_BOUND_REASON = f"must be finite numbers of magnitude at most {MAX_FEATURE:g}"


def _within_bound(values: np.ndarray) -> bool:
    """True when every value of a float64 array (1-D or 2-D) is finite and at most
    :data:`MAX_FEATURE` in magnitude."""
    return bool(kernels.max_abs(values.reshape(1, -1) if values.ndim == 1 else values)
                <= MAX_FEATURE)  # NaN fails


_CANDIDATE_KEYS = frozenset({"id", "topics", "tags", "features"})
_PLAIN = frozenset({list, tuple, type(None)})  # compared with == to a cached entry
_ONLY_DICTS, _ONLY_STR = {dict}, {str}
#: Fields of a cache entry: topics, tags (as given), view, its topic key, whether it has
#: tags, the id as a JSON string
_TOPICS, _TAGS, _VIEW, _TOPIC_KEY, _HAS_TAGS, _JSON_ID = map(itemgetter, range(6))
_NUMERIC_KINDS = "biuf"  # numpy dtype kinds of booleans, integers and floats
_NUMBER_TYPES = frozenset({int, float})
_ID = itemgetter("id")


def _fields(candidates: Sequence, where: str) -> tuple[list, list, list, list, list]:
    """The candidates' ids, topics, tags and features, and per candidate the error its
    shape gives (None: none), raised by :meth:`Featurizer._check` in the candidates' order."""
    if type(candidates) is list and {*map(type, candidates)} == _ONLY_DICTS \
            and _CANDIDATE_KEYS.issuperset(chain.from_iterable(candidates)):  # the common case
        return ([*map(dict.get, candidates, repeat("id"))],
                [*map(dict.get, candidates, repeat("topics"))],
                [*map(dict.get, candidates, repeat("tags"))],
                [*map(dict.get, candidates, repeat("features"))], [None] * len(candidates))
    out: tuple[list, ...] = ([], [], [], [], [])
    for k, cand in enumerate(candidates):
        fields, problem = (None, None, None, None), None
        if isinstance(cand, str):
            fields = (cand, None, None, None)
        elif not isinstance(cand, Mapping):
            problem = ValidationError(f"{where}[{k}]", "must be an item id or an object with 'id'",
                                      cand)
        elif len(cand) > 4 or not cand.keys() <= _CANDIDATE_KEYS:
            extra = cand.keys() - _CANDIDATE_KEYS
            problem = ValidationError(f"{where}[{k}].{sorted(extra)[0]}",
                                      "unknown field; allowed: id, topics, tags, features")
        else:
            fields = (cand.get("id"), cand.get("topics"), cand.get("tags"), cand.get("features"))
        for column, value in zip(out, (*fields, problem), strict=True):
            column.append(value)
    return out


def _numbers_only(row: object) -> bool:
    """None, or a list of plain ints and floats: feature rows a kept list may hold."""
    return row is None or (type(row) is list and {*map(type, row)} <= _NUMBER_TYPES)


def _frozen(value: object) -> object:
    """A copy of a list (so later changes by the caller cannot alter the cached entry)."""
    return list(value) if type(value) is list else value


def _listed(value: object) -> object:
    """Topics or tags as given, a non-string sequence (a numpy array, say) as a list."""
    if value is None or isinstance(value, (str, list, tuple)) or not isinstance(value, Sequence):
        return value
    return list(value)
