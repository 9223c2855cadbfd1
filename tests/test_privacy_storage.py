"""Pseudonymous storage and minimal text: with a key set, after a realistic scenario
(ingest with search text, rank, reward, restart, export, erase) no byte of any file in the
data directory, of any export, or of any log line holds a raw user id or a raw search
text; the engine still answers by the application's ids."""

from __future__ import annotations

import logging

import pytest
from filebytes import files_holding

from engine import Engine
from engine.errors import StoreError, ValidationError
from engine.export import to_dsjson, to_parquet
from engine.privacy.pseudonym import ENV, Pseudonyms

USERS = [f"alice-RAW{i:03d}-id" for i in range(12)]
SEARCH = "Where can I buy cheap Flights to Oslo tomorrow?"
CANDIDATES = [{"id": "item-x", "topics": ["jazz"], "features": [1.0, 0.0]},
              {"id": "item-y", "topics": ["rock"], "features": [0.0, 1.0]}]


def _engine(data_dir, key, **settings):
    settings.setdefault("clock", lambda: 5000.0)
    return Engine(str(data_dir), policy="lints", item_features=2, seed=3,
                  pseudonym_key_file=str(key) if key else None, snapshot_every=7,
                  **settings)


def _events(users, base):
    out = []
    for i, u in enumerate(users):
        out += [{"user_id": u, "type": "click", "ts": base + i, "item_id": f"item-{i % 3}",
                 "topics": ["jazz"], "attributes": {"region": "north"}},
                {"user_id": u, "type": "search", "ts": base + i + 0.5, "text": SEARCH}]
    return out


def _scenario(eng, users, base) -> None:
    eng.ingest(_events(users, base))
    for i, u in enumerate(users):
        d = eng.rank(u, CANDIDATES)
        if i % 2 == 0:
            eng.reward(d.decision_id, 1.0)
    eng.rank_batch([{"user_id": u, "candidates": CANDIDATES} for u in users[:3]])


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "pseudonym.key"
    path.parent.mkdir()
    path.write_bytes(b"9f1c2b7e5a3d4c6b8e0f1a2b3c4d5e6f\n")
    return path


def test_no_raw_id_or_search_text_in_any_file_export_or_log(tmp_path, key, caplog):
    data = tmp_path / "data"
    caplog.set_level(logging.DEBUG)
    eng = _engine(data, key)
    _scenario(eng, USERS[:8], 4000.0)
    eng.close()
    eng = _engine(data, key)  # restart: recovered from snapshots and the log tail
    _scenario(eng, USERS[4:], 4100.0)
    profile = eng.profile(USERS[0])
    assert profile["user_id"] == USERS[0] and profile["engagement"]["events"] >= 3
    assert profile["keywords"]["oslo"] > 0  # keywords learned from the text
    assert eng.variant_of(USERS[1]) == "default"
    erased = eng.forget(USERS[1])
    assert erased["profile"] == 1 and erased["events"] >= 2 and erased["decisions"] >= 1
    assert eng.profile(USERS[1]) is None and eng.profile(USERS[2]) is not None
    eng.close()
    out = tmp_path / "exports"
    out.mkdir()
    assert to_parquet(data, out / "log.parquet", include_pending=True) > 0
    assert to_dsjson(data, out / "log.dsjson") > 0
    eng = _engine(data, key)  # a last restart, then the files are read closed
    assert eng.profile(USERS[0])["user_id"] == USERS[0]
    eng.close()

    raw = [u.encode() for u in USERS] + [SEARCH.encode(), b"Flights to Oslo"]
    assert files_holding(data, raw) == {}
    assert files_holding(out, raw) == {}
    assert not [r for r in caplog.records if any(u in r.getMessage() for u in USERS)]
    # the pseudonyms are there instead, and the erased user's is gone from every file
    pseudo = Pseudonyms(key.read_bytes().strip())
    assert files_holding(data, [pseudo(USERS[0]).encode()])
    assert files_holding(data, [pseudo(USERS[1]).encode()]) == {}


def test_without_a_key_ids_are_raw_and_text_is_still_minimal(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    eng = _engine(tmp_path / "d", None)
    _scenario(eng, USERS[:2], 4000.0)
    eng.close()
    hits = files_holding(tmp_path / "d", [USERS[0].encode(), SEARCH.encode()])
    assert hits and all(found == [USERS[0].encode()] for found in hits.values())


def test_store_text_opt_in_keeps_the_text(tmp_path):
    eng = _engine(tmp_path / "d", None, store_text=True)
    eng.ingest(_events(USERS[:1], 4000.0))
    eng.close()
    assert files_holding(tmp_path / "d", [SEARCH.encode()])


def test_key_from_the_environment(tmp_path, key, monkeypatch):
    monkeypatch.setenv(ENV, str(key))
    eng = _engine(tmp_path / "d", None)
    _scenario(eng, USERS[:2], 4000.0)
    eng.close()
    assert files_holding(tmp_path / "d", [USERS[0].encode()]) == {}


def test_a_directory_is_reopened_only_the_way_it_was_written(tmp_path, key, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    other = tmp_path / "keys" / "other.key"
    other.write_bytes(b"another key of at least sixteen bytes")
    eng = _engine(tmp_path / "p", key)
    _scenario(eng, USERS[:2], 4000.0)
    eng.close()
    with pytest.raises(StoreError, match="holds pseudonyms; set pseudonym_key_file"):
        _engine(tmp_path / "p", None)
    with pytest.raises(StoreError, match="was written with another key"):
        _engine(tmp_path / "p", other)
    eng = _engine(tmp_path / "r", None)
    _scenario(eng, USERS[:2], 4000.0)
    eng.close()
    with pytest.raises(StoreError, match="holds raw user ids"):
        _engine(tmp_path / "r", key)
    eng = _engine(tmp_path / "p", key)  # the right key still opens it
    assert eng.profile(USERS[0]) is not None
    eng.close()


def test_key_inside_the_data_directory_is_refused_before_anything_is_written(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "key").write_bytes(b"k" * 32)
    with pytest.raises(ValidationError, match="pseudonym_key_file: must be outside"):
        _engine(data, data / "key")
    assert sorted(p.name for p in data.iterdir()) == ["key"]


def test_ray_backend_stores_pseudonyms_only(tmp_path, key):
    """The same scenario with shards as Ray actors (and a Ray learner): snapshots made in
    the actors hold pseudonyms only, and erasure reaches them."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        data = tmp_path / "data"
        eng = _engine(data, key, backend="ray", shards=2)
        _scenario(eng, USERS[:6], 4000.0)
        assert eng.profile(USERS[0])["user_id"] == USERS[0]
        assert eng.forget(USERS[1])["profile"] == 1
        eng.close()
        eng = _engine(data, key, backend="ray", shards=2)
        assert eng.profile(USERS[2])["user_id"] == USERS[2] and eng.profile(USERS[1]) is None
        eng.close()
    finally:
        ray.shutdown()
    raw = [u.encode() for u in USERS] + [SEARCH.encode()]
    assert files_holding(data, raw) == {}
    pseudo = Pseudonyms(key.read_bytes().strip())
    assert files_holding(data, [pseudo(USERS[1]).encode()]) == {}
    assert files_holding(data, [pseudo(USERS[2]).encode()])
