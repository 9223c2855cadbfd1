"""Each mistake a user makes is named once, in their own terms: a one-line ``error:`` from
the CLI naming the flag or key and what is allowed, and HTTP field paths in the request
body's names."""

from __future__ import annotations

import pytest

from engine import Engine
from experiments.cli import main


def cli_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line
    return err.strip()


def test_simulate_mistakes_are_one_line(tmp_path, capsys):
    out = str(tmp_path)
    assert cli_error(capsys, "simulate", "--preset", "windy", "--out", out) == (
        "error: --preset: unknown preset 'windy'; choose from ['stationary', 'drifting', "
        "'trend', 'fatigue', 'cold_start', 'long_term']")
    assert cli_error(capsys, "simulate", "--policies", "lints", "--params",
                     '{"lints": {"vv": 0.2}}', "--out", out).startswith(
        "error: --params.lints.vv: unknown parameter of policy 'lints'; allowed: [")
    assert cli_error(capsys, "simulate", "--policies", "lints", "--params",
                     '{"linucb": {"alpha": 0.2}}', "--out", out) == (
        "error: --params.linucb: 'linucb' is not run (--policies lints); leave it out or add "
        "it there")
    assert not list(tmp_path.iterdir())  # nothing was run


def test_a_bad_policy_parameter_in_a_compare_config_is_named_before_any_worker(tmp_path,
                                                                                capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("horizon: 400\nbatch_size: 200\nseeds: [0]\nvariants:\n"
                   "  a: {policy: uniform}\n  b: {policy: lints, params: {vv: 1}}\n")
    err = cli_error(capsys, "compare", str(cfg))
    assert err.startswith(f"error: {cfg}: variants.b: params.vv: unknown parameter of policy "
                          "'lints'; allowed")


def test_readers_never_create_a_data_directory(tmp_path, capsys):
    missing = tmp_path / "nosuchdir"
    err = cli_error(capsys, "ope", "--log", str(missing), "--policy", "lints")
    assert "is not an engine data directory" in err and not missing.exists()
    err = cli_error(capsys, "export", "--log", str(missing), "--out", str(tmp_path / "x.pq"))
    assert "is not an engine data directory" in err and not missing.exists()
    err = cli_error(capsys, "quarantine", "--data-dir", str(missing))
    assert "is not an engine data directory" in err and not missing.exists()


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    data = tmp_path / "d"
    Engine(data, item_features=2).close()
    assert cli_error(capsys, "export", "--log", str(data), "--format", "dsjson",
                     "--include-pending", "--out", str(tmp_path / "x.json")) == (
        "error: --include-pending: applies to --format parquet only (DSJson holds rewarded "
        "decisions); leave it out")
    assert cli_error(capsys, "ope", "--log", str(data), "--policy", "lints", "--target-dist",
                     "t.npy") == "error: --target-dist: has no effect with --log; leave it out"
    assert cli_error(capsys, "ope", "--data", "x.csv", "--target-dist", "t.npy", "--policy",
                     "lints") == "error: --policy: has no effect with --data; leave it out"


def test_a_directory_an_engine_holds_is_one_line(tmp_path, capsys):
    data = tmp_path / "d"
    eng = Engine(data, item_features=2)
    try:  # export reads a running engine's directory (read-only); quarantine --release writes
        assert main(["export", "--log", str(data), "--out", str(tmp_path / "x.pq")]) == 0
        assert "as of the last commit" in capsys.readouterr().out
        err = cli_error(capsys, "quarantine", "--data-dir", str(data))
        assert "is in use by another engine" in err
    finally:
        eng.close()
    assert main(["quarantine", "--data-dir", str(data)]) == 0
    assert "0 record(s) in quarantine" in capsys.readouterr().out


def test_serve_refuses_an_unknown_policy_in_one_line(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("engine:\n  policy: thompson\n")
    monkeypatch.setenv("LOOPWISE_TOKEN", "t")
    err = cli_error(capsys, "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert err.startswith("error: engine.policy: unknown policy 'thompson'; choose from [")


@pytest.mark.parametrize(("settings", "message"), [
    ({"policy_params": {"v": -1}}, "policy_params.v: must be > 0.0 (got -1)"),
    ({"policy_params": {"vv": 1}}, "policy_params.vv: unknown parameter of policy 'lints'"),
    ({"policy": "thompson"}, "policy: unknown policy 'thompson'; choose from ["),
    ({"variants": {"a": {"policy": "uniform"}, "b": {"policy": "lints", "params": {"v": 0}}}},
     "variants.b.params.v: must be > 0.0 (got 0)"),
    ({"variants": {"a": {"policy": "uniform"}, "b": {"policy": "nope"}}},
     "variants.b.policy: unknown policy 'nope'"),
])
def test_engine_settings_name_the_policy_parameter(settings, message):
    from engine.errors import ValidationError

    with pytest.raises(ValidationError) as err:
        Engine(None, **settings)
    assert str(err.value).startswith(message)


httpx = pytest.importorskip("httpx")


def test_http_errors_name_the_request_bodys_fields(tmp_path):
    from tests.test_http import Server

    server = Server(tmp_path / "d", policy="lints", seed=0)
    try:
        c = server.client
        good = {"id": "a", "features": [0.0, 1.0]}
        body = {"user_id": "u1", "excludedActions": ["b"],
                "actions": [good, {"id": "b"}, {"id": "c", "features": [1.0]}]}
        r = c.post("/v1/rank", json=body)  # candidate 1 of the engine is action 2 here
        assert r.status_code == 422
        assert r.json()["error"]["field"] == "actions[2].features"
        body["actions"][2]["features"] = [1.0, "x"]
        r = c.post("/v1/rank", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "actions[2].features[1]"
        r = c.post("/v1/rank", json={"user_id": "u1", "actions": [good],
                                     "contextFeatures": [{"age": 3}]})
        assert r.json()["error"]["field"] == "contextFeatures.age"
        r = c.post("/v1/rank", json={"user_id": "u1", "actions": [good], "eventId": "e1"})
        r = c.post("/v1/rank", json={"user_id": "u1", "actions": [good], "eventId": "e1"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "eventId"
    finally:
        server.stop()
