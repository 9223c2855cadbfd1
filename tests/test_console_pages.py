"""The console in a real headless Chromium against a real ``loopwise serve`` on loopback.

Each page loads without console errors and shows the numbers the JSON API gives for the
same seeded data; user search and erasure work end to end; a page asked for without the
session cookie goes to sign-in. The screenshots in README's "Console" section are written
here (``docs/console/*.png``).
"""

from __future__ import annotations

import re
import time

import pytest
from console_site import SHOTS, USERS, Site, browser_path, fmt

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[dev]')")
if browser_path() is None:
    pytest.skip("no Chromium found (chromium not on PATH; .ci/run installs it with apt)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("console"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
        yield b
        b.close()


class Tab:
    """A browser context signed in (or not) to the site, collecting console errors."""

    def __init__(self, browser, site, token=None):
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.site = site
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if token:
            self.page.goto(site.url + "/ui/login")
            self.page.fill("#token", token)
            self.page.click("button[type=submit]")
            self.page.wait_for_url(re.compile(r".*/ui/users$"))

    def open(self, path: str, shot: str | None = None):
        self.page.goto(self.site.url + path)
        self.page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        return self.page

    def texts(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]

    def close(self):
        self.context.close()


def until(page, expression: str, seconds: float = 15.0) -> None:
    """Poll a JavaScript expression from here until it is true. (Playwright's own
    ``wait_for_function`` polls with ``eval`` in the page, which the console's
    Content-Security-Policy rightly forbids.)"""
    deadline = time.time() + seconds
    while not page.evaluate(expression):
        assert time.time() < deadline, f"never true: {expression}"
        time.sleep(0.05)


@pytest.fixture
def admin(browser, site):
    tab = Tab(browser, site, site.admin)
    yield tab
    tab.close()


def test_no_cookie_redirects_to_sign_in_and_back(browser, site):
    tab = Tab(browser, site)
    page = tab.page
    page.goto(site.url + "/ui/users/user-01")
    assert page.url == site.url + "/ui/login?next=/ui/users/user-01"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "signin.png"))
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Unknown token."
    page.fill("#token", site.reader)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready='1']")
    assert page.url == site.url + "/ui/users/user-01"
    cookie = next(c for c in tab.context.cookies() if c["name"] == "loopwise_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert site.reader not in cookie["value"]  # a session id, never the token
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    page.click("#signout")
    page.wait_for_url(re.compile(r".*/ui/login$"))
    page.goto(site.url + "/ui/live")
    assert "/ui/login" in page.url  # signed out on the server too
    tab.close()


def test_user_page_shows_the_profile_the_api_gives(admin, site):
    user = USERS[2]
    profile = site.get(f"/v1/profiles/{user}").json()
    decisions = site.get(f"/v1/users/{user}/decisions?limit=20").json()["decisions"]
    page = admin.open(f"/ui/users/{user}", shot="user")
    eng = profile["engagement"]
    assert page.locator("#engagement [data-key=events]").inner_text() == fmt(eng["events"])
    assert page.locator("#engagement [data-key=rate]").inner_text() == fmt(eng["rate"])
    top = sorted(profile["interests"].items(), key=lambda kv: -abs(kv[1]))[:15]
    bars = page.locator("#interests g")
    assert bars.count() == len(top)
    for k, (key, value) in enumerate(top):
        g = bars.nth(k)
        assert g.get_attribute("data-key") == key
        assert g.locator("text.value").text_content() == fmt(value)
    assert admin.texts("#attributes tbody td") == [
        x for k, v in profile["attributes"].items() for x in (k, str(v))]
    assert len(admin.texts("#keywords tbody tr")) == len(profile["keywords"])
    assert page.locator("#history path.line").count() >= 1
    rows = page.locator("#decisions tbody tr")
    assert rows.count() == len(decisions)
    first = rows.nth(0).locator("td")
    assert first.nth(3).inner_text() == decisions[0]["chosen"]
    assert first.nth(6).inner_text() == str(decisions[0]["policy_version"])
    assert [fmt(c["probability"]) for c in decisions[0]["candidates"]] == [
        t.rsplit(" ", 1)[1] for t in admin.texts("#decisions tbody tr:first-child .cand")]
    assert admin.errors == []


def test_drift_detections_are_marked_on_the_timeline(admin, site):
    profile = site.get("/v1/profiles/user-shift").json()
    page = admin.open("/ui/users/user-shift", shot="user-shift")
    assert profile["drift"]["detections"] >= 1, profile["drift"]
    assert page.locator("#engagement [data-key=detections]").inner_text() == fmt(
        profile["drift"]["detections"])
    assert page.locator("#history rect.mark").count() == len(profile["drift"]["windows"]) >= 1
    assert admin.errors == []


def test_user_search(admin, site):
    page = admin.open("/ui/users", shot="users")
    page.fill("#user-search", "user-1")
    expected = site.get("/v1/users?prefix=user-1").json()["users"]
    until(page, f"document.querySelectorAll('#user-results li').length == {len(expected)}")
    assert admin.texts("#user-results li") == expected == [u for u in USERS if u.startswith("user-1")]
    page.fill("#user-search", USERS[5])
    page.press("#user-search", "Enter")
    page.wait_for_url(f"**/ui/users/{USERS[5]}")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#user-id").inner_text() == USERS[5]
    assert admin.errors == []


def test_why_this_item_shows_the_attribution_the_api_gives(admin, site):
    did = site.get(f"/v1/users/{USERS[1]}/decisions?limit=1").json()["decisions"][0]["decision_id"]
    body = site.get(f"/v1/decisions/{did}").json()
    page = admin.open(f"/ui/decisions/{did}", shot="decision")
    groups = body["attribution"]["groups"]
    assert page.locator("#summary").inner_text() == body["attribution"]["summary"]
    assert [(g["group"], fmt(g["contribution"])) for g in groups] == [
        (g.locator("text.label").text_content(), g.locator("text.value").text_content())
        for g in page.locator("#attribution g").all()]
    assert page.locator("#decision [data-key=chosen]").inner_text() == body["decision"]["chosen"]
    assert admin.texts("#candidates tbody td:nth-child(2)") == [
        fmt(c["probability"]) for c in body["decision"]["candidates"]]
    assert admin.errors == []


def _metrics(site) -> dict[str, float]:
    out = {}
    for line in site.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_live_page_shows_what_metrics_exposes(admin, site):
    page = admin.open("/ui/live", shot="live")
    metrics = _metrics(site)  # after the page: its own requests are not counted in these
    live = site.get("/v1/live?minutes=120").json()
    rows = [r.locator("td").all_inner_texts() for r in page.locator("#metrics-variants tbody tr").all()]
    assert rows == [[v, fmt(metrics.get(f'loopwise_decisions_total{{variant="{v}"}}', 0)),
                     fmt(metrics[f'loopwise_policy_version{{variant="{v}"}}']),
                     fmt(metrics[f'loopwise_policy_drift_detections{{variant="{v}"}}'])]
                    for v in ("control", "treatment")]
    assert sum(float(r[1]) for r in rows) == 12  # the decisions ranked through HTTP
    for status in ("joined", "late", "default"):
        shown = page.locator(f"#metrics-rewards [data-key={status}]").inner_text()
        assert shown == fmt(metrics.get(f'loopwise_rewards_total{{status="{status}"}}', 0))
        stored = page.locator(f"#store-rewards [data-key={status}]").inner_text()
        assert stored == fmt(live["reward_totals"][status])
    assert page.locator("#decisions-per-minute path.line").count() == 2
    assert admin.errors == []


def test_experiments_page_shows_the_report(admin, site):
    page = admin.open("/ui/experiments", shot="experiments")
    report = site.get("/v1/experiments/report").json()
    rows = {r.locator("td").nth(0).inner_text(): r.locator("td").all_inner_texts()
            for r in page.locator("#variants tbody tr").all()}
    for name, v in report["variants"].items():
        assert rows[name][1] == fmt(report["srm"]["observed"][name])
        assert rows[name][3:5] == [fmt(v["n"]), fmt(v["mean"])]
    lift = report["comparisons"]["treatment"]["lift"]
    assert rows["treatment"][6] == fmt(lift * 100) + "%"
    assert fmt(report["srm"]["p_value"]) in page.locator("#srm").inner_text()
    assert page.locator("#pvalue path.line").count() == 1
    assert page.locator("#confseq path.band").count() == 1
    assert admin.errors == []


def test_offline_reports_with_their_plots(admin, site):
    page = admin.open("/ui/reports", shot="reports")
    listed = site.get("/v1/reports").json()["reports"]
    assert [r["title"] for r in listed] == ["drifting-tiny"]
    assert admin.texts("#reports tbody td:first-child") == ["drifting-tiny"]
    page.click("#reports a")
    page.wait_for_selector("body[data-ready='1']")
    until(page, "[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    assert page.locator("#report img.plot").count() == len(listed[0]["plots"]) == 2
    assert page.locator("#report h1").inner_text() == "drifting-tiny"
    assert admin.errors == []


def test_erase_flow_end_to_end(admin, browser, site):
    victim = USERS[7]
    reader = Tab(browser, site, site.reader)
    reader.open(f"/ui/users/{victim}")
    assert reader.page.locator("#erase-open").count() == 0  # read scope: no erase button
    status = reader.page.evaluate(
        "async (u) => (await fetch('/v1/profiles/' + u, {method: 'DELETE', headers: "
        "{'X-CSRF-Token': 'forged'}})).status", victim)
    assert status == 403  # a cookie without the session's CSRF token changes nothing
    reader.close()
    page = admin.open(f"/ui/users/{victim}")
    page.click("#erase-open")
    page.fill("#erase-confirm", victim[:-1])
    assert page.locator("#erase-go").is_disabled()  # confirmed by typing the exact id
    page.fill("#erase-confirm", victim)
    page.click("#erase-go")
    page.wait_for_selector("#erased")
    assert page.locator("#not-found").is_visible()
    assert site.get(f"/v1/profiles/{victim}").status_code == 404
    assert site.get(f"/v1/users/{victim}/decisions").json() == {"decisions": []}
    page.goto(f"{site.url}/ui/users/{victim}")
    page.wait_for_selector("#not-found")
    # the only console errors: the browser noting the profile's 404 answers
    assert all("404" in e for e in admin.errors), admin.errors
