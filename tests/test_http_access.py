"""Access to the HTTP service: named tokens with scopes, rotation without a restart, the
access log, the API docs and the health check. Through real servers on loopback: uvicorn in
a thread (``test_http.Server``) and ``loopwise serve`` processes."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("uvicorn")

from test_http import TOKEN, Server, actions, free_port  # noqa: E402

from engine.serve import tokens  # noqa: E402
from experiments.cli import main as cli  # noqa: E402


class Process:
    """``loopwise serve`` in a child process on loopback; its stderr goes to ``self.log``."""

    def __init__(self, folder, *args, env=None, scheme="http", verify=True):
        self.port = free_port()
        self.log = folder / "serve.log"
        cfg = folder / "serve.yaml"
        cfg.write_text("engine:\n  policy: lints\n  item_features: 2\n"
                       "  context_features: [mobile]\n  seed: 0\n")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "experiments.cli", "serve", "--config", str(cfg),
                 "--data-dir", str(folder / "d"), "--port", str(self.port), *args],
                env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=err)
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10, verify=verify)
        deadline = time.time() + 60
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("server did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.1)

    def get(self, path, token=None, **kw):
        return self.client.get(path, headers=_auth(token), **kw)

    def post(self, path, token=None, **kw):
        return self.client.post(path, headers=_auth(token), **kw)

    def stop(self):
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "d", policy="lints", seed=0)
    yield s
    s.stop()


def _auth(token):
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_for(check, seconds=5.0):
    """Poll ``check`` until it is true; how long it took (fails after ``seconds``)."""
    start = time.time()
    while not check():
        assert time.time() - start < seconds, "not within the time allowed"
        time.sleep(0.1)
    return time.time() - start


def test_token_cli_keeps_digests_only(tmp_path, capsys):
    path = str(tmp_path / "tokens.yaml")
    assert cli(["token", "add", "shop", "--scopes", "rank,read", "--file", path]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("lw_") and len(secret) > 40
    text = open(path).read()
    assert secret not in text and tokens.digest(secret) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cli(["token", "add", "ops", "--scopes", "admin", "--file", path]) == 0
    capsys.readouterr()
    assert cli(["token", "list", "--file", path]) == 0
    listed = capsys.readouterr().out
    assert "shop\trank,read" in listed and "ops\tadmin" in listed and secret not in listed
    assert cli(["token", "add", "shop", "--file", path]) == 2  # the name exists
    assert cli(["token", "add", "x", "--scopes", "rank,write", "--file", path]) == 2
    assert cli(["token", "add", "bad name", "--file", path]) == 2
    assert "scopes" in capsys.readouterr().err
    assert cli(["token", "remove", "shop", "--file", path]) == 0
    assert cli(["token", "remove", "shop", "--file", path]) == 1
    assert list(tokens.read_file(path)) == ["ops"]


def test_token_file_is_reread_at_most_once_a_second(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    old = tokens.add(path, "old", ["rank"])
    now = [0.0]
    accepted = tokens.Tokens("static-one", path, clock=lambda: now[0])

    def name(token):
        try:
            return accepted.authenticate(f"Bearer {token}".encode()).name
        except tokens.AuthError as err:
            return err.status

    assert name(old) == "old"
    new = tokens.add(path, "new", ["rank", "read"])
    assert name(new) == 401  # not looked at again within the second
    now[0] += 1.01
    assert (name(new), name(old)) == ("new", "old")  # both, while clients move over
    tokens.remove(path, "old")
    now[0] += 1.01
    assert (name(new), name(old)) == ("new", 401)
    with open(path, "a") as fh:
        fh.write("tokens: [this is: not valid\n")
    now[0] += 1.01
    assert name(new) == "new"  # a broken file leaves the last good set in force
    os.unlink(path)
    now[0] += 1.01
    assert (name(new), name("static-one")) == (401, "static")  # gone: its tokens revoked
    reader = tokens.add(path, "reader", ["read"])
    with pytest.raises(tokens.AuthError, match="'reader' lacks the scope 'admin'") as err:
        tokens.Tokens(None, path).authorize(f"Bearer {reader}".encode(), "admin")
    assert err.value.status == 403


ENDPOINTS = [  # method, path, body, scope
    ("POST", "/v1/rank", {"user_id": "u1", "actions": actions()}, "rank"),
    ("POST", "/v1/events/nope/reward", {"value": 1.0}, "rank"),
    ("POST", "/v1/events", {"events": []}, "rank"),
    ("GET", "/v1/profiles/u1", None, "read"),
    ("GET", "/v1/experiments/report", None, "read"),
    ("GET", "/v1/rollout", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", "/openapi.json", None, "read"),
    ("DELETE", "/v1/profiles/u1", None, "admin"),
]


@pytest.fixture
def scoped(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    secrets = {scope: tokens.add(path, f"{scope}-app", [scope]) for scope in tokens.SCOPES}
    s = Server(tmp_path / "d", token=tokens.Tokens(TOKEN, path), policy="lints", seed=0)
    s.secrets = secrets
    yield s
    s.stop()


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_each_endpoint_needs_its_scope(scoped, method, path, body, scope):
    bare = httpx.Client(base_url=scoped.url, timeout=10)
    for held, secret in [*scoped.secrets.items(), ("all", TOKEN)]:
        r = bare.request(method, path, json=body, headers=_auth(secret))
        if held in (scope, "all"):
            assert r.status_code not in (401, 403), (held, r.text)
        else:
            assert r.status_code == 403, (held, r.text)
            assert r.json()["error"] == {
                "field": "authorization", "reason": f"token '{held}-app' lacks the scope '{scope}'"}
    r = bare.request(method, path, json=body)
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    bare.close()


def test_healthz_needs_no_token_and_reports_the_store(server, monkeypatch):
    bare = httpx.Client(base_url=server.url, timeout=10)
    assert bare.get("/healthz").json() == {"status": "ok", "quarantined": 0, "reason": None}
    states = {"degraded": ({"status": "degraded", "quarantined": 3, "reason": "3 in quarantine"},
                           200),
              "failing": ({"status": "failing", "quarantined": None, "reason": "disk I/O"}, 503)}
    for health, status in states.values():
        monkeypatch.setattr(server.engine, "health", lambda h=health: h)
        r = bare.get("/healthz")
        assert (r.status_code, r.json()) == (status, health)
    bare.close()


def test_docs_behind_the_read_scope_or_off(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    reader, ranker = tokens.add(path, "reader", ["read"]), tokens.add(path, "ranker", ["rank"])
    s = Server(tmp_path / "a", token=tokens.Tokens(None, path), policy="uniform")
    off = Server(tmp_path / "b", app_kwargs={"api_docs": "off"}, policy="uniform")
    try:
        bare = httpx.Client(base_url=s.url, timeout=10)
        assert bare.get("/openapi.json").status_code == 401
        assert bare.get("/openapi.json", headers=_auth(ranker)).status_code == 403
        spec = bare.get("/openapi.json", headers=_auth(reader))
        assert spec.status_code == 200
        assert spec.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert spec.json()["paths"]["/v1/profiles/{user_id}"]["delete"]["x-scope"] == "admin"
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = bare.get(page, headers=_auth(reader))
            assert r.status_code == 404 and "cdn" not in r.text.lower()
        bare.close()
        r = off.client.get("/openapi.json")
        assert r.status_code == 404 and r.json()["error"]["field"] == "path"
    finally:
        s.stop()
        off.stop()


def test_unexpected_errors_log_the_route_and_type_never_the_body(server, monkeypatch, caplog):
    marker = "PRIVATE-BODY-7f3a"

    def boom(*args, **kwargs):
        raise ValueError(f"cannot handle {args!r}")  # quotes the request, as numpy's do

    monkeypatch.setattr(server.engine, "rank", boom)
    monkeypatch.setattr(server.engine, "ingest", boom)
    with caplog.at_level(logging.INFO):
        r = server.client.post("/v1/rank", json={"user_id": marker, "actions": actions()})
        assert r.status_code == 500
        assert r.json() == {"error": {"field": "server", "reason": "internal error (logged)"}}
        r = server.client.post("/v1/events", json={"events": [
            {"user_id": marker, "type": "view", "ts": time.time()}]})
        assert r.status_code == 500
    errors = [rec.getMessage() for rec in caplog.records if rec.name == "loopwise.error"]
    assert len(errors) == 2 and errors[0].startswith("500 on POST /v1/rank: ValueError at ")
    assert errors[1].startswith("500 on POST /v1/events: ValueError at ")
    assert marker not in caplog.text and marker not in r.text


def test_access_log_modes(tmp_path, caplog):
    path = str(tmp_path / "tokens.yaml")
    ranker = tokens.add(path, "ranker", ["rank"])
    s = Server(tmp_path / "d", token=tokens.Tokens(TOKEN, path), policy="uniform",
               app_kwargs={"access_log": "changes"})
    try:
        with caplog.at_level(logging.INFO, logger="loopwise.access"):
            assert s.client.post("/v1/rank", json={"user_id": "u1", "actions": actions()}
                                 ).status_code == 200
            assert s.client.delete("/v1/profiles/u1").status_code == 200
            r = s.client.get("/metrics", headers=_auth(ranker))
            assert r.status_code == 403
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "loopwise.access"]
        assert len(lines) == 3, lines  # the erasure (its record, its request), the refusal
        assert lines[0].startswith("erasure user=(no pseudonym key: id not logged) profile=0 ")
        assert lines[1].startswith("token=static method=DELETE route=/v1/profiles/{user_id} "
                                   "status=200 ms=")
        assert lines[2].startswith("token=ranker method=GET route=/metrics status=403")
        assert "u1" not in caplog.text and ranker not in caplog.text
    finally:
        s.stop()


def test_rotation_and_access_log_on_a_running_process(tmp_path):
    """A token added to the file works within seconds while the old one keeps working until
    it is removed; LOOPWISE_TOKEN keeps every scope; the access log names tokens, never
    holds one, a user id or a body."""
    path = str(tmp_path / "tokens.yaml")
    old = tokens.add(path, "shop-2025", ["rank"])
    p = Process(tmp_path, "--token-file", path, env={"LOOPWISE_TOKEN": "static-secret-1"})
    marker, user = "BODY-MARKER-91c2", "user-SECRET-7"
    try:
        body = {"user_id": user, "actions": actions(), "excludedActions": [marker]}
        assert p.post("/v1/rank", old, json=body).status_code == 200
        new = tokens.add(path, "shop-2026", ["rank"])
        took = wait_for(lambda: p.post("/v1/rank", new, json=body).status_code == 200)
        assert took < 3
        assert p.post("/v1/rank", old, json=body).status_code == 200  # the overlap
        tokens.remove(path, "shop-2025")
        wait_for(lambda: p.post("/v1/rank", old, json=body).status_code == 401)
        assert p.post("/v1/rank", new, json=body).status_code == 200
        assert p.get(f"/v1/profiles/{user}", new).status_code == 403
        for check in (p.get(f"/v1/profiles/{user}", "static-secret-1"),
                      p.client.delete(f"/v1/profiles/{user}", headers=_auth("static-secret-1")),
                      p.get("/metrics", "static-secret-1")):
            assert check.status_code in (200, 404), check.text  # rank made no profile
    finally:
        p.stop()
    log = p.log.read_text()
    for secret in (old, new, "static-secret-1"):
        assert secret not in log
    assert marker not in log and user not in log
    assert "token=shop-2025 method=POST route=/v1/rank status=200" in log
    assert "token=shop-2026 method=POST route=/v1/rank status=200" in log
    assert "token=- method=POST route=/v1/rank status=401" in log
    assert "token=static method=DELETE route=/v1/profiles/{user_id} status=200" in log
    assert "token file" in log and "reloaded" in log
    assert json.dumps(old) not in log
