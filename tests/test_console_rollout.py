"""The Experiments page of an engine rolling out a challenger: the rollout's state, gate and
every step as ``GET /v1/rollout`` gives them, read in a real headless Chromium."""

from __future__ import annotations

import pytest
from console_site import SHOTS, Site, browser_path, fmt

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[dev]')")
if browser_path() is None:
    pytest.skip("no Chromium found (chromium not on PATH; .ci/run installs it with apt)",
                allow_module_level=True)

ROLLOUT = {"challenger": {"policy": "linucb"}, "steps": [0.1, 0.5, 1.0], "margin": 0.0,
           "check_every": 20, "min_events_per_step": 50}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("console-rollout"), rollout=ROLLOUT)
    yield s
    s.stop()


def pct(x: float) -> str:
    return fmt(x * 100) + "%"


def test_experiments_page_shows_the_rollout(site):
    rollout = site.get("/v1/rollout").json()
    assert rollout["history"]  # at least its start in shadow
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{site.url}/ui/experiments")
        page.fill("#token", site.reader)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector("#rollout")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "rollout.png"), full_page=True)
        figure = {k: page.locator(f"#rollout [data-key={k}]").inner_text()
                  for k in ("state", "share", "champion", "challenger")}
        assert figure == {"state": rollout["state"], "share": pct(rollout["share"]),
                          "champion": rollout["champion"], "challenger": "linucb"}
        steps = [r.locator("td").all_inner_texts()
                 for r in page.locator("#rollout-steps tbody tr").all()]
        assert [s[1:] for s in steps] == [[e["event"], pct(e["share"]), e["reason"]]
                                          for e in rollout["history"]]
        assert "null" not in page.locator("#main").inner_text()
        assert errors == []
        browser.close()
