"""``loopwise ope --dsjson``: a Personalizer-style DSJson log written here, with a known
logging policy and known reward probabilities, so each fixed policy's true value is known.

Users of 4 segments; each segment's favourite of 4 genres pays with probability 0.8, any
other with 0.2. The application lists the favourite first half of the time; the logging
policy shows the first listed action with probability 0.4 and each other with 0.2. True
values: baseline (first action) 0.5*0.8 + 0.5*0.2 = 0.5; random 0.25*0.8 + 0.75*0.2 = 0.35;
logged 0.5*(0.4*0.8 + 0.6*0.2) + 0.5*(0.2*0.8 + 0.8*0.2) = 0.38; the best policy 0.8.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.cli import main as cli
from experiments.ope.dsjson import compare, parse_lines, read_dsjson

GENRES = ["jazz", "rock", "pop", "folk"]
TRUE = {"baseline": 0.5, "random": 0.35, "logged": 0.38}


def write_log(path, n=4000, seed=0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            seg = int(rng.integers(4))
            fav = GENRES[seg]
            rest = [g for g in rng.permutation(GENRES).tolist() if g != fav]
            order = [fav, *rest] if rng.random() < 0.5 else [rest[0], fav, *rest[1:]]
            probs = [0.4, 0.2, 0.2, 0.2]
            shown = int(rng.choice(4, p=probs))
            reward = float(rng.random() < (0.8 if order[shown] == fav else 0.2))
            ranked = [shown] + [k for k in range(4) if k != shown]
            event = {"_label_cost": -reward, "_label_probability": probs[shown],
                     "_label_Action": shown + 1, "_labelIndex": shown,
                     "Timestamp": "2025-01-01T00:00:00.0000000Z", "Version": "1",
                     "EventId": f"e{i}", "a": [k + 1 for k in ranked],
                     "c": {"User": {"segment": f"s{seg}", "mobile": bool(i % 2)},
                           "_multi": [{"_tag": g, "Item": {"genre": g, "length": 3.5}}
                                      for g in order]},
                     "p": [probs[k] for k in ranked], "VWState": {"m": "model-1"}}
            fh.write(json.dumps(event) + "\n")
        # a deferred event never activated: Personalizer marks it, evaluation leaves it out
        fh.write(json.dumps({**event, "EventId": "deferred", "_skipLearn": True}) + "\n")


def test_known_policies_within_their_intervals_and_a_trained_policy_beats_them(tmp_path):
    from policies import make

    path = tmp_path / "log.json"
    write_log(path)
    log = read_dsjson(path, width=64)
    assert len(log.reward) == 4000 and log.skipped == 1
    results = compare(log, {"lints": make("lints", n_features=65, seed=0)},
                      estimators="ips,snips", n_bootstrap=200, seed=0)
    for name, true in TRUE.items():
        ips = results[name]["IPS"]
        assert ips.low <= true <= ips.high, (name, ips)
    # the logged policy's value by IPS is the mean logged reward
    assert results["logged"]["IPS"].estimate == pytest.approx(log.reward.mean())
    # trained on the log round by round, LinTS learns the tastes: clearly above every
    # fixed policy (measured, SNIPS: 0.77 [0.74, 0.79] against 0.49 [0.47, 0.52] for the
    # baseline; the best policy's value is 0.8)
    trained = results["lints"]["SNIPS"]
    assert trained.low > results["baseline"]["SNIPS"].high, trained
    assert trained.estimate < 0.8 + 0.03


def test_cli_compares_and_names_bad_lines(tmp_path, capsys):
    path = tmp_path / "log.json"
    write_log(path, n=600)
    assert cli(["ope", "--dsjson", str(path), "--policy", "egreedy", "--bootstrap", "50",
                "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["policy"] for r in rows} == {"logged", "baseline", "random",
                                           "egreedy (progressive)"}
    assert {r["name"] for r in rows} == {"IPS", "SNIPS"}
    # Replay on a log that was not uniform (0.4/0.2/0.2/0.2) carries a warning
    assert cli(["ope", "--dsjson", str(path), "--policy", "egreedy", "--bootstrap", "20",
                "--estimators", "replay"]) == 0
    out = capsys.readouterr().out
    assert "egreedy: a fresh policy trained on the log by progressive validation" in out
    assert out.count("warning: Replay: the log was not uniformly logged") == 4
    bad = tmp_path / "bad.json"
    bad.write_text('{"_label_cost": 0, "_label_probability": 0.5, "_labelIndex": 3, '
                   '"c": {"_multi": [{}, {}]}}\n')
    assert cli(["ope", "--dsjson", str(bad)]) == 2
    assert "line 1._labelIndex" in capsys.readouterr().err


def test_reads_loopwise_export(tmp_path):
    """A Loopwise data directory exported as DSJson evaluates too."""
    from engine import Engine
    from engine.export import to_dsjson

    now = [1000.0]
    eng = Engine(tmp_path / "d", item_features=4, policy="uniform", seed=0,
                 clock=lambda: now[0])
    for i in range(30):
        d = eng.rank(f"u{i % 3}", [{"id": "a", "features": [1, 0, 0, 0]},
                                   {"id": "b", "features": [0, 1, 0, 0]}])
        eng.reward(d.decision_id, float(d.chosen == "a"))
    eng.close()
    assert to_dsjson(tmp_path / "d", tmp_path / "out.json") == 30
    log = read_dsjson(tmp_path / "out.json", width=16)
    assert len(log.reward) == 30 and np.allclose(log.pscore, 0.5)
    r = compare(log, n_bootstrap=50)
    assert r["logged"]["IPS"].estimate == pytest.approx(log.reward.mean())


def test_parse_errors_name_the_field():
    with pytest.raises(ValueError, match=r"line 1.c._multi"):
        parse_lines(['{"_label_cost": 0, "_label_probability": 1, "_labelIndex": 0, "c": {}}'])
    with pytest.raises(ValueError, match=r"line 2: is not valid JSON"):
        parse_lines(["", "{nope"])
