"""A seeded ``loopwise serve`` and a headless Chromium for the console tests.

:func:`seed` fills a data directory through a real :class:`Engine` (users with events,
attributes, search text, a shift in feedback; decisions of two variants with joined, late
and default rewards); :class:`Site` serves it with ``loopwise serve`` on loopback (a token
file with an admin and a read-only token, a results folder holding a real ``loopwise
simulate`` report) and sends some traffic through HTTP so ``/metrics`` has counts too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from engine import Engine
from engine.serve import tokens

ROOT = Path(__file__).resolve().parents[1]
# the README's screenshots, rewritten where asked (LOOPWISE_SCREENSHOTS=1); a scratch folder
# otherwise, so a test run leaves the checkout as it was
SHOTS = (ROOT / "docs" / "console" if os.environ.get("LOOPWISE_SCREENSHOTS")
         else Path(tempfile.mkdtemp(prefix="loopwise-shots-")))
USERS = [f"user-{k:02d}" for k in range(16)]
TOPICS = ["jazz", "rock", "news", "sport"]
def engine_settings(backend: str = "inline", rollout: dict | None = None) -> dict:
    """Two variants (an A/B test); with ``rollout``, one policy and that rollout instead."""
    base = {"item_features": 2, "context_features": ["mobile"], "seed": 0,
            "wait_window": 600.0, "backend": backend}
    if rollout is not None:
        return {**base, "policy": "lints", "rollout": rollout}
    return {**base, "variants": {"control": {"policy": "lints"},
                                 "treatment": {"policy": "egreedy"}}}


def candidates(k: int) -> list[dict]:
    return [{"id": f"item-{t}-{j}", "topics": [t], "tags": [f"tag-{j}"],
             "features": [float(j == k % 2), 0.5]} for j, t in enumerate(TOPICS)]


def seed(data_dir: Path, backend: str = "inline", rollout: dict | None = None) -> float:
    """Seed ``data_dir``; returns the (past) time its last decision was made at."""
    now = [time.time() - 2.5 * 3600.0]
    rng = np.random.default_rng(0)
    eng = Engine(str(data_dir), clock=lambda: now[0], **engine_settings(backend, rollout))
    try:
        for k, user in enumerate(USERS):
            favourite = TOPICS[k % len(TOPICS)]
            eng.ingest([{"user_id": user, "type": "view", "ts": now[0] - 3000 + i * 60,
                         "item_id": f"item-{favourite}-{i}", "topics": [favourite],
                         "tags": [f"tag-{i % 3}"]} for i in range(6)] + [
                {"user_id": user, "type": "search", "ts": now[0] - 100,
                 "text": f"best {favourite} of the year", "attributes": {
                     "region": ["eu", "us"][k % 2], "age_band": "25-34"}}])
        for step in range(480):
            user = USERS[step % len(USERS)]
            d = eng.rank(user, candidates(step), {"mobile": float(step % 3 == 0)})
            liked = d.chosen.startswith(f"item-{TOPICS[USERS.index(user) % 4]}")
            if step % 10 != 9:  # every tenth waits for its window: a default reward
                eng.reward(d.decision_id, float(liked or rng.random() < 0.2))
            now[0] += 12.0
        now[0] += 900.0  # the windows close: defaults learned
        late = eng.rank(USERS[0], candidates(0))
        eng.ingest([])
        now[0] += 900.0
        eng.ingest([])
        eng.reward(late.decision_id, 1.0)  # after its window: recorded as late
        # a user whose feedback turns: liked everything, then nothing
        eng.ingest([{"user_id": "user-shift", "type": "reward", "value": float(i < 80),
                     "ts": now[0] - 2000 + i * 10, "item_id": f"item-jazz-{i % 4}",
                     "topics": ["jazz" if i < 80 else "rock"]} for i in range(160)])
        return now[0]
    finally:
        eng.close()


def browser_path() -> str | None:
    """The system's Chromium, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Site:
    """``loopwise serve`` over a seeded data directory, on loopback."""

    def __init__(self, folder: Path, backend: str = "inline", rollout: dict | None = None):
        self.folder = folder
        seed(folder / "d", rollout=rollout)  # the store is the same whichever backend serves it
        token_file = folder / "tokens.yaml"
        self.admin = tokens.add(str(token_file), "console-admin", ["read", "admin"])
        self.reader = tokens.add(str(token_file), "console-reader", ["read"])
        self.ranker = tokens.add(str(token_file), "console-ranker", ["rank"])
        results = folder / "results"
        subprocess.run([sys.executable, "-m", "experiments.cli", "simulate", "--policies",
                        "uniform,lints", "--steps", "600", "--users", "20", "--out", str(results),
                        "--name", "drifting-tiny", "--workers", "1", "--no-progress"],
                       cwd=ROOT, check=True, capture_output=True, timeout=300)
        cfg = folder / "serve.yaml"
        cfg.write_text(json.dumps({"engine": engine_settings(backend, rollout)}))  # YAML too
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "experiments.cli", "serve", "--config", str(cfg),
                 "--data-dir", str(folder / "d"), "--port", str(self.port), "--token-file",
                 str(token_file), "--results-dir", str(results), "--access-log", "off"],
                cwd=ROOT, env={**os.environ, "LOOPWISE_TOKEN": ""},
                stdout=subprocess.DEVNULL, stderr=err)
        self.client = httpx.Client(base_url=self.url, timeout=60,
                                   headers={"Authorization": f"Bearer {self.admin}"})
        self._wait()
        self._traffic()

    def _wait(self) -> None:
        deadline = time.time() + 120
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("server did not start: " + self.log.read_text()[-3000:])
            time.sleep(0.2)

    def _traffic(self) -> None:
        """Decisions and rewards through HTTP, so the server's own counters move."""
        rank = {"Authorization": f"Bearer {self.ranker}"}
        for step in range(12):
            r = self.client.post("/v1/rank", headers=rank, json={
                "user_id": USERS[step % 4], "actions": candidates(step),
                "context": {"mobile": 1.0}})
            r.raise_for_status()
            if step % 3:
                self.client.post(f"/v1/events/{r.json()['eventId']}/reward", headers=rank,
                                 json={"value": float(step % 2)}).raise_for_status()

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(x) -> str:
    """A number as the console writes it (console.js ``fmt``): integers whole, others to 4
    significant digits, shortest form."""
    if x is None:
        return "–"
    if float(x).is_integer():
        return str(int(x))
    v = float(f"{x:.4g}")
    return str(int(v)) if v.is_integer() else repr(v)
