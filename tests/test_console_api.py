"""The console's server side without a browser: sign-in cookies through the one access
check (scopes, revocation, sign-out), the CSRF guard, the redirect to sign-in, why-this-item
(``GET /v1/decisions/{eventId}``) with a known answer, and the bounded read-side routes.
Real servers on loopback (``test_http.Server``)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

pytest.importorskip("uvicorn")

from test_http import TOKEN, Server, actions  # noqa: E402

from engine.serve import tokens  # noqa: E402
from engine.serve.sessions import COOKIE  # noqa: E402


@pytest.fixture
def site(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    secrets = {scope: tokens.add(path, f"{scope}-app", [scope]) for scope in tokens.SCOPES}
    secrets["admin"] = tokens.add(path, "boss", ["read", "admin"])
    s = Server(tmp_path / "d", token=tokens.Tokens(TOKEN, path), policy="lints", seed=0)
    s.secrets, s.token_file = secrets, path
    yield s
    s.stop()


def sign_in(site, token: str) -> httpx.Client:
    """A cookie-only client (no Authorization header) signed in with ``token``."""
    client = httpx.Client(base_url=site.url, timeout=10)
    r = client.post("/ui/login", data={"token": token, "next": "/ui/live"})
    assert r.status_code == 303, r.text
    return client


def csrf_headers(client: httpx.Client, site) -> dict:
    return {"X-CSRF-Token": client.get("/ui/session").json()["csrf"], "Origin": site.url}


def seed(site, user="u1", n=3):
    c = site.client
    c.post("/v1/events", json={"events": [{"user_id": user, "type": "click", "ts": time.time(),
                                            "item_id": "i1", "topics": ["t1"]}]})
    ids = [c.post("/v1/rank", json={"user_id": user, "actions": actions()}).json()["eventId"]
           for _ in range(n)]
    for i in ids:
        c.post(f"/v1/events/{i}/reward", json={"value": 1.0})
    return ids


def test_sign_in_sets_a_strict_httponly_session_cookie(site):
    client = httpx.Client(base_url=site.url, timeout=10)
    assert client.post("/ui/login", data={"token": "nope"}).status_code == 401
    assert client.post("/ui/login", data={"token": site.secrets["rank"]}).status_code == 403
    r = client.post("/ui/login", data={"token": site.secrets["read"], "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/users"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert cookie.startswith(f"{COOKIE}=") and site.secrets["read"] not in cookie
    r = client.post("/ui/login", data={"token": site.secrets["read"]},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403  # sign-in from another site's form


def test_the_cookie_carries_exactly_the_tokens_scopes(site):
    seed(site)
    reader = sign_in(site, site.secrets["read"])
    assert reader.get("/v1/profiles/u1").status_code == 200
    assert reader.get("/ui/session").json()["scopes"] == ["read"]
    r = reader.post("/v1/rank", json={"user_id": "u1", "actions": actions()},
                    headers=csrf_headers(reader, site))
    assert r.status_code == 403 and "lacks the scope 'rank'" in r.json()["error"]["reason"]
    r = reader.delete("/v1/profiles/u1", headers=csrf_headers(reader, site))
    assert r.status_code == 403 and r.json()["error"]["field"] == "authorization"


def test_csrf_guard_on_state_changing_requests(site):
    seed(site)
    admin = sign_in(site, site.secrets["admin"])
    good = csrf_headers(admin, site)
    for headers in ({}, {"Origin": site.url}, {**good, "X-CSRF-Token": "forged"},
                    {**good, "Origin": "http://evil.example"}, {"X-CSRF-Token": good["X-CSRF-Token"]}):
        r = admin.delete("/v1/profiles/u1", headers=headers)
        assert r.status_code == 403, headers
        assert r.json()["error"]["field"] == "csrf"
    assert site.client.get("/v1/profiles/u1").status_code == 200  # nothing was erased
    r = admin.delete("/v1/profiles/u1", headers=good)
    assert r.status_code == 200 and r.json()["deleted"]["profile"] == 1
    assert site.client.get("/v1/profiles/u1").status_code == 404
    # a bearer token needs no CSRF proof: no browser sends it on its own
    assert site.client.delete("/v1/profiles/u1").status_code == 200


def test_pages_without_a_session_go_to_sign_in_and_apis_answer_401(site):
    bare = httpx.Client(base_url=site.url, timeout=10)
    for page in ("/ui", "/ui/users/u%201", "/ui/live", "/ui/experiments", "/ui/reports"):
        r = bare.get(page)
        assert r.status_code == 303, page
        assert r.headers["location"].startswith("/ui/login?next=/ui")
    r = bare.get("/v1/live")
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    assert bare.get("/ui/login").status_code == 200
    js = bare.get("/ui/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    page = sign_in(site, site.secrets["read"]).get("/ui/live")
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_sign_out_and_revoked_tokens_end_the_session(site):
    admin = sign_in(site, site.secrets["admin"])
    reader = sign_in(site, site.secrets["read"])
    assert admin.post("/ui/logout", headers=csrf_headers(admin, site)).status_code == 204
    assert admin.get("/v1/live").status_code == 401  # gone on the server, whatever the jar holds
    tokens.remove(site.token_file, "read-app")
    time.sleep(tokens.CHECK_EVERY + 0.1)
    assert reader.get("/v1/live").status_code == 401  # the cookie is only ever the token


def test_why_this_item_known_answer(site):
    ids = seed(site, n=20)
    body = site.client.get(f"/v1/decisions/{ids[-1]}").json()
    d, a = body["decision"], body["attribution"]
    assert d["decision_id"] == ids[-1] and d["user_id"] == "u1" and d["reward"] == 1.0
    assert abs(sum(c["probability"] for c in d["candidates"]) - 1) < 1e-9
    policy = site.engine.learners["default"].policy
    assert a["policy_version"] == site.engine.learners["default"].version
    feats = {f["name"]: f for g in a["groups"] for f in g["features"]}
    theta = np.asarray(policy.theta)
    names = site.engine.featurizer.feature_names
    for j, name in enumerate(names[1:], start=1):  # bias: never separates candidates
        f = feats[name]
        assert f["weight"] == pytest.approx(theta[j])
        assert f["contribution"] == pytest.approx(theta[j] * (f["value"] - f["mean"]))
    total = sum(g["contribution"] for g in a["groups"])
    assert total == pytest.approx(a["score"] - a["mean_score"], abs=1e-6)
    groups = {g["group"] for g in a["groups"]}
    assert groups == {"profile interests", "latent factors", "context", "item features"}
    assert [g["contribution"] for g in a["groups"]] == sorted(
        (g["contribution"] for g in a["groups"]), reverse=True)
    r = site.client.get("/v1/decisions/nope")
    assert r.status_code == 404 and r.json() == {
        "error": {"field": "eventId", "reason": "no decision with this id"}}


def test_why_this_item_without_linear_weights(tmp_path):
    s = Server(tmp_path / "d", policy="uniform", seed=0)
    try:
        did = s.client.post("/v1/rank", json={"user_id": "u", "actions": actions()}).json()["eventId"]
        body = s.client.get(f"/v1/decisions/{did}").json()
        assert body["attribution"] is None and "Uniform has no linear weights" in body["reason"]
    finally:
        s.stop()


def test_read_side_routes_are_bounded_and_checked(site):
    seed(site, "alice", 3)
    seed(site, "alfred", 2)
    c = site.client
    assert c.get("/v1/users?prefix=al").json() == {"users": ["alfred", "alice"]}
    assert c.get("/v1/users?prefix=al&limit=1").json() == {"users": ["alfred"]}
    got = c.get("/v1/users/alice/decisions?limit=2").json()["decisions"]
    assert len(got) == 2 and got[0]["ts"] >= got[1]["ts"]
    r = c.get("/v1/users/alice/decisions?limit=100000")
    assert r.status_code == 422 and r.json()["error"]["field"] == "query.limit"
    hist = c.get("/v1/users/alice/history?points=5").json()
    assert len(hist["times"]) == 5 and "topic:t1" in hist["series"]  # the click, and rewards
    assert hist["series"]["topic:t1"][0] == pytest.approx(1.0, abs=1e-3)  # one click's weight
    hist = c.get("/v1/experiments/history").json()  # one variant: no A/B test
    assert (hist["ab"], hist["rollout"], hist["points"]) == (False, False, [])
    live = c.get("/v1/live").json()
    assert sum(r["decisions"] for r in live["decisions"]) == 5
    assert live["reward_totals"] == {"joined": 5}
    for path in ("/ui/files/0/../../../etc/passwd", "/ui/files/0/LOCK", "/ui/files/7/report.md"):
        assert c.get(path).status_code == 404, path


def test_offline_reports_are_found_by_their_files(tmp_path):
    from engine.serve.console_api import find_reports, report_file

    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "report.md").write_text("intro\n## Drifting\n![r](reward.png)\n")
    (tmp_path / "sim" / "reward.png").write_bytes(b"\x89PNG")
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "report.md").write_text("# A/B lints vs squarecb\n")
    (tmp_path / "ab" / "report.json").write_text("{}")
    (tmp_path / "ope" / "deep").mkdir(parents=True)
    (tmp_path / "ope" / "deep" / "estimates.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "report.md").write_text("# hidden\n")
    found = {r["id"]: (r["title"], r["kind"], r["markdown"], r["plots"])
             for r in find_reports([str(tmp_path)])}
    assert found == {"0/sim": ("Drifting", "simulate", True, ["reward.png"]),
                     "0/ab": ("A/B lints vs squarecb", "compare", True, []),
                     "0/ope/deep": ("deep", "ope", False, ["estimates.png"])}
    assert report_file([str(tmp_path)], "0/sim", "reward.png") == tmp_path / "sim" / "reward.png"
    assert report_file([str(tmp_path)], "0/sim", "report.py") is None  # not a report's type
    (tmp_path.parent / "outside.md").write_text("secret")
    assert report_file([str(tmp_path)], "0/..", "outside.md") is None  # outside the folder
    assert report_file([str(tmp_path)], "1/sim", "reward.png") is None  # no such folder
