"""Router: a stable map from user id to shard, the same in every process and on every run."""

from __future__ import annotations

from hashlib import blake2b

from engine.checks import check_int


def stable_hash(key: str, salt: str = "") -> int:
    """64-bit hash of ``salt + key`` that never changes across processes (unlike ``hash``).

    Examples
    --------
    >>> stable_hash("u1") == stable_hash("u1")
    True
    >>> stable_hash("u1") != stable_hash("u1", salt="x")
    True
    """
    return int.from_bytes(blake2b((salt + key).encode(), digest_size=8).digest(), "big")


class Router:
    """Maps ``user_id`` to one of ``n_shards`` shards.

    Examples
    --------
    >>> router = Router(4)
    >>> router.shard_of("alice") == router.shard_of("alice")
    True
    """

    def __init__(self, n_shards: int):
        self.n_shards = check_int("shards", n_shards, 1)
        self._cache: dict[str, int] = {}

    def shard_of(self, user_id: str) -> int:
        shard = self._cache.get(user_id)
        if shard is None:
            shard = stable_hash(user_id) % self.n_shards
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            self._cache[user_id] = shard
        return shard
