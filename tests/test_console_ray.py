"""The console over the Ray backend: the same seeded store served by ``loopwise serve`` with
``backend: ray`` (profiles in shard actors), read in a real headless Chromium; the user and
why-this-item pages show what the API gives, and erasure reaches the actors."""

from __future__ import annotations

import pytest
from console_site import USERS, Site, browser_path, fmt

pytest.importorskip("ray")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[dev]')")
if browser_path() is None:
    pytest.skip("no Chromium found (chromium not on PATH; .ci/run installs it with apt)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("console-ray"), backend="ray")
    yield s
    s.stop()


def test_pages_over_the_ray_backend(site):
    user = USERS[3]
    profile = site.get(f"/v1/profiles/{user}").json()
    did = site.get(f"/v1/users/{user}/decisions?limit=1").json()["decisions"][0]["decision_id"]
    why = site.get(f"/v1/decisions/{did}").json()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{site.url}/ui/users/{user}")
        page.fill("#token", site.admin)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#engagement [data-key=events]").inner_text() == fmt(
            profile["engagement"]["events"])
        top = max(profile["interests"].items(), key=lambda kv: abs(kv[1]))
        assert page.locator("#interests g").first.get_attribute("data-key") == top[0]
        page.goto(f"{site.url}/ui/decisions/{did}")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#summary").inner_text() == why["attribution"]["summary"]
        assert errors == []
        page.goto(f"{site.url}/ui/users/{user}")
        page.wait_for_selector("body[data-ready='1']")
        page.click("#erase-open")
        page.fill("#erase-confirm", user)
        page.click("#erase-go")
        page.wait_for_selector("#erased")
        browser.close()
    assert site.get(f"/v1/profiles/{user}").status_code == 404
