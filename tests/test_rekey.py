"""Re-keying a pseudonymous data directory (engine.privacy.rekey, loopwise rekey): every
profile survives under the new key, moving shard where its new pseudonym routes elsewhere;
no byte of the old pseudonyms is left; the old key no longer opens the directory."""

from __future__ import annotations

import pytest
from filebytes import holding

from engine import Engine
from engine.errors import StoreError
from engine.privacy.pseudonym import Pseudonyms
from engine.privacy.rekey import rekey
from experiments.cli import main as cli

USERS = [f"customer-{i:02d}" for i in range(16)]
CANDS = [{"id": "a", "topics": ["jazz"], "features": [1.0, 0.0]},
         {"id": "b", "topics": ["rock"], "features": [0.0, 1.0]}]


@pytest.fixture
def keys(tmp_path):
    out = []
    for name in ("old", "new"):
        path = tmp_path / "keys" / name
        path.parent.mkdir(exist_ok=True)
        assert cli(["pseudonym-key", "--out", str(path)]) == 0
        out.append(path)
    return out


def _engine(data, key):
    return Engine(str(data), policy="lints", item_features=2, seed=2, shards=3,
                  clock=lambda: 5000.0, pseudonym_key_file=str(key))


def _fill(data, key) -> dict:
    eng = _engine(data, key)
    eng.ingest([{"user_id": u, "type": t, "ts": 4000.0 + i, "item_id": f"item{i % 4}",
                 "topics": ["jazz" if i % 2 else "rock"]}
                for i, u in enumerate(USERS) for t in ("view", "click")])
    for u in USERS:
        d = eng.rank(u, CANDS)
        eng.reward(d.decision_id, 1.0)
    eng.ingest([{"user_id": USERS[0], "type": "purchase", "ts": 4999.0, "item_id": "item1"}])
    profiles = {u: eng.profile(u) for u in USERS}
    eng.close()
    return profiles


def test_rekey_keeps_every_profile_and_leaves_no_old_pseudonym(tmp_path, keys, capsys):
    old, new = keys
    data = tmp_path / "d"
    before = _fill(data, old)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(USERS) + "\n")
    assert cli(["rekey", "--data-dir", str(data), "--ids", str(ids), "--old-key-file",
                str(old), "--new-key-file", str(new)]) == 0
    out = capsys.readouterr().out
    assert "re-keyed 16 user(s)" in out
    assert int(out.split("; ")[1].split()[0]) > 0  # some profiles changed shard
    p_old, p_new = (Pseudonyms(k.read_bytes().strip()) for k in keys)
    for u in USERS:
        assert holding(data, p_old(u).encode()) == [], u
        assert holding(data, u.encode()) == []
    assert holding(data, p_new(USERS[0]).encode())
    with pytest.raises(StoreError, match="another key"):
        _engine(data, old)
    eng = _engine(data, new)
    assert {u: eng.profile(u) for u in USERS} == before
    # the engine goes on: new events land on the re-keyed profiles, after restarts too
    eng.ingest([{"user_id": USERS[1], "type": "click", "ts": 5000.0, "item_id": "item2"}])
    assert eng.profile(USERS[1])["engagement"]["events"] == before[USERS[1]]["engagement"][
        "events"] + 1
    eng.close()
    eng = _engine(data, new)
    assert eng.profile(USERS[1])["engagement"]["events"] == before[USERS[1]]["engagement"][
        "events"] + 1
    assert eng.profile(USERS[2]) == before[USERS[2]]
    eng.close()


def test_rekey_refuses_unmatched_pseudonyms_or_erases_them(tmp_path, keys):
    old, new = keys
    data = tmp_path / "d"
    _fill(data, old)
    with pytest.raises(StoreError, match="1 stored pseudonym"):
        rekey(data, old, new, USERS[1:])
    out = rekey(data, old, new, USERS[1:], drop_unmatched=True)
    assert out["users"] == 15 and out["dropped"] == 1
    assert holding(data, Pseudonyms(old.read_bytes().strip())(USERS[0]).encode()) == []
    eng = _engine(data, new)
    assert eng.profile(USERS[0]) is None and eng.profile(USERS[1]) is not None
    eng.close()


def test_rekey_needs_the_engine_closed_and_the_right_old_key(tmp_path, keys):
    old, new = keys
    data = tmp_path / "d"
    _fill(data, old)
    with pytest.raises(StoreError, match="another key"):
        rekey(data, new, old, USERS)
    eng = _engine(data, old)
    with pytest.raises(StoreError, match="in use"):
        rekey(data, old, new, USERS)
    eng.close()
