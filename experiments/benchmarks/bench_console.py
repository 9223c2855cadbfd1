"""How long a console page takes to render over a big store: 10,000 users, 100,000 decisions.

Seeds a data directory through the engine (two variants, events for every user, decisions
with rewards: joined, and default for every tenth), serves it with the real app under
uvicorn on loopback, signs in with a headless Chromium and times each page from navigation
until it is drawn (``body[data-ready]``): the median of ``--repeats`` loads. The JSON calls
behind each page are timed too. A second run reuses the data directory (``--data-dir``).

    python -m experiments.benchmarks.bench_console --users 10000 --decisions 100000

Prints one line per page: ``page  median_ms  max_ms  (api: ...)``; then the latency of
``POST /v1/rank`` alone and while another client loads console data without a pause (the
console reads outside the engine's lock, so a page load should not hold ranks up).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from engine import Engine
from engine.serve.app import create_app
from experiments.serve import uvicorn_config

TOKEN = "bench-console"
TOPICS = [f"topic{k}" for k in range(30)]
SETTINGS = {"item_features": 2, "context_features": ["mobile"], "seed": 0,
            "wait_window": 3600.0, "variants": {"control": {"policy": "lints"},
                                                "treatment": {"policy": "egreedy"}}}


def seed(data_dir: Path, users: int, decisions: int, batch: int = 500) -> None:
    """Fill ``data_dir``: a few events per user, then ``decisions`` decisions in batches."""
    now = [time.time() - decisions * 0.05 - 7200]
    rng = np.random.default_rng(0)
    eng = Engine(str(data_dir), clock=lambda: now[0], snapshot_every=10**9, **SETTINGS)
    try:
        for start in range(0, users, 2000):
            eng.ingest([{"user_id": f"user-{u:05d}", "type": "click", "ts": now[0] - 60,
                         "item_id": f"i{u % 97}", "topics": [TOPICS[(u + k) % 30]],
                         "tags": [f"tag{k}"]} for u in range(start, min(users, start + 2000))
                        for k in range(3)])
        pool = [{"id": f"item{j}", "topics": [TOPICS[j % 30]], "features": [j % 2, j / 10]}
                for j in range(10)]
        done, t0 = 0, time.time()
        while done < decisions:
            n = min(batch, decisions - done)
            reqs = [{"user_id": f"user-{int(u):05d}", "candidates": pool,
                     "context": {"mobile": float(u % 2)}}
                    for u in rng.integers(0, users, n)]
            made = eng.rank_batch(reqs)
            eng.reward_batch([(d.decision_id, float(rng.random() < 0.3)) for k, d in
                              enumerate(made) if k % 10])
            done += n
            now[0] += n * 0.05
            if done % 20_000 == 0:
                print(f"  seeded {done} decisions ({time.time() - t0:.0f} s)", flush=True)
        now[0] += 7200  # every open window closes: defaults learned
        eng.ingest([])
    finally:
        eng.close()


def serve(data_dir: Path):
    """The app over ``data_dir`` under uvicorn in a thread: (server, url)."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Engine(str(data_dir), **SETTINGS), TOKEN, access_log="off")
    server = uvicorn.Server(uvicorn_config(app, {"port": port}, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def time_pages(url: str, pages: list[str], repeats: int) -> dict[str, list[float]]:
    """Milliseconds from navigation to a drawn page, per page, in a headless Chromium."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page()
        page.goto(url + "/ui/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        for path in pages:
            for _ in range(repeats + 1):  # the first load warms the caches: not counted
                t = time.perf_counter()
                page.goto(url + path)
                page.wait_for_selector("body[data-ready='1']", timeout=30_000)
                out.setdefault(path, []).append((time.perf_counter() - t) * 1e3)
            out[path] = out[path][1:]
        browser.close()
    return out


def time_api(url: str, paths: list[str], repeats: int) -> dict[str, float]:
    """Median milliseconds of each JSON call."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60) as client:
        out = {}
        for path in paths:
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - t) * 1e3)
            out[path] = statistics.median(times)
        return out


def rank_latency(url: str, n: int = 400, console: bool = False) -> list[float]:
    """Milliseconds of ``n`` rank requests, one every 5 ms; with ``console``, another client
    loads the Live, Experiments and interest-history data meanwhile, without a pause."""
    body = {"user_id": "user-00042", "context": {"mobile": 1.0},
            "actions": [{"id": f"item{j}", "topics": [TOPICS[j % 30]], "features": [j % 2, j / 10]}
                        for j in range(10)]}
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as c:
            while not stop.is_set():
                for path in ("/v1/live", "/v1/experiments/history",
                             "/v1/users/user-00042/history"):
                    c.get(path).raise_for_status()

    loader = threading.Thread(target=load, daemon=True)
    if console:
        loader.start()
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60) as c:
        for _ in range(n):
            t = time.perf_counter()
            c.post("/v1/rank", json=body).raise_for_status()
            out.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.005)
    stop.set()
    if console:
        loader.join()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--decisions", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data-dir", help="reuse (or keep) the seeded data directory here")
    args = p.parse_args(argv)
    tmp = None if args.data_dir else tempfile.mkdtemp(prefix="bench-console-")
    data_dir = Path(args.data_dir or tmp) / "d"
    try:
        if not (data_dir / "loopwise.sqlite").exists():
            t = time.time()
            seed(data_dir, args.users, args.decisions)
            print(f"seeded {args.users} users, {args.decisions} decisions in "
                  f"{time.time() - t:.0f} s")
        server, url = serve(data_dir)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                did = c.get("/v1/users/user-00042/decisions?limit=1").json()["decisions"][0][
                    "decision_id"]
            apis = {"/ui/users": ["/v1/users?prefix=user-0&limit=20"],
                    "/ui/users/user-00042": ["/v1/profiles/user-00042",
                                             "/v1/users/user-00042/decisions?limit=20",
                                             "/v1/users/user-00042/history"],
                    f"/ui/decisions/{did}": [f"/v1/decisions/{did}"],
                    "/ui/live": ["/metrics", "/v1/live?minutes=120"],
                    "/ui/experiments": ["/v1/experiments/report", "/v1/experiments/history"]}
            pages = time_pages(url, list(apis), args.repeats)
            for path, times in pages.items():
                calls = time_api(url, apis[path], args.repeats)
                api = ", ".join(f"{k.split('?')[0]} {v:.0f} ms" for k, v in calls.items())
                print(f"{path[:24]:<26}{statistics.median(times):7.0f} ms median"
                      f"{max(times):7.0f} ms max   (api: {api})")
            for console in (False, True):
                lat = rank_latency(url, console=console)
                print(f"rank {'while the console loads' if console else 'alone':<24} p50 "
                      f"{statistics.median(lat):.1f} ms, p99 "
                      f"{statistics.quantiles(lat, n=100)[98]:.1f} ms, max {max(lat):.1f} ms")
        finally:
            server.should_exit = True
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
