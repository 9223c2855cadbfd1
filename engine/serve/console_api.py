"""The JSON the console's pages draw (``read`` scope), usable by any client too:
``GET /v1/decisions/{eventId}`` (why this item), a user's decisions and interest history,
user search, live per-minute figures, the A/B report over time, and offline reports.

Every answer comes from bounded, indexed queries (:mod:`engine.insight`) on a read-only view
of the log (:class:`~engine.storeview.StoreView`, one read transaction), in the server's
thread pool and outside the engine's lock, so a page load never holds a rank up; the lock is
taken only to move queued writes into SQLite first and for what the engine holds in memory
(profiles, stats, policies). Offline reports are the ``report.md`` files that ``loopwise
simulate``, ``compare`` and ``ope`` write, with their plots, found under the results folders,
or the PNG plots ``loopwise ope --plot`` wrote.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     _ = (Path(d) / "run1").mkdir()
...     _ = (Path(d) / "run1" / "report.md").write_text("# Sim\\n![r](reward.png)\\n")
...     [r["title"] for r in find_reports([d])]
['Sim']
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from engine import insight
from engine.explain import explain
from engine.serve.front import error_response
from engine.storeview import StoreView

MAX_REPORTS = 200  # reports listed, newest first
MAX_DEPTH = 4  # folders below a results folder searched for reports
FILE_TYPES = {".md": "text/markdown; charset=utf-8", ".png": "image/png",
              ".json": "application/json", ".csv": "text/csv; charset=utf-8"}


def _json(value) -> JSONResponse:
    """A JSON answer; numbers JSON cannot hold (nan, inf) become null."""
    return JSONResponse(json.loads(json.dumps(value, default=lambda _: None),
                                   parse_constant=lambda _: None))


def find_reports(folders: list[str]) -> list[dict]:
    """Reports under ``folders``, newest first: a folder with a ``report.md`` (``loopwise
    simulate``, ``compare``) or with PNG plots only (``loopwise ope --plot``). Each: id
    (``<folder index>/<path>``), title (the first heading, else the folder's name), kind,
    whether it has Markdown, modified time and plots."""
    found = []
    for k, folder in enumerate(folders):
        root = Path(folder)
        if not root.is_dir():
            continue
        for here, dirs, files in os.walk(root):
            depth = len(Path(here).relative_to(root).parts)
            dirs[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirs if not d.startswith("."))
            if "report.md" in files or any(f.endswith(".png") for f in files):
                found.append(_report_entry(k, root, Path(here)))
    found.sort(key=lambda r: -r["modified"])
    return found[:MAX_REPORTS]


def _report_entry(k: int, root: Path, folder: Path) -> dict:
    md = folder / "report.md"
    plots = sorted(p.name for p in folder.glob("*.png"))
    title = folder.name
    if md.is_file():
        text = md.read_text(encoding="utf-8", errors="replace")
        title = next((line.lstrip("# ").strip() for line in text.splitlines()
                      if line.startswith("#")), title)
    kind = ("compare" if (folder / "report.json").is_file() else "simulate") if md.is_file() \
        else "ope"
    rel = folder.relative_to(root).as_posix()
    newest = max((folder / n).stat().st_mtime for n in ([md.name] if md.is_file() else plots))
    return {"id": f"{k}/{rel}" if rel != "." else f"{k}", "title": title, "kind": kind,
            "markdown": md.is_file(), "modified": newest, "plots": plots}


def report_file(folders: list[str], report: str, name: str) -> Path | None:
    """A file of a report, kept inside its results folder (no ``..``, no other types)."""
    head, _, rest = report.partition("/")
    if not head.isdigit() or int(head) >= len(folders) or Path(name).suffix not in FILE_TYPES:
        return None
    root = Path(folders[int(head)]).resolve()
    path = (root / rest / name).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


@contextmanager
def _log(engine, lock):
    """The engine's log as of now: queued writes moved into SQLite under the lock, then read
    outside it through a read-only view (closed after the block)."""
    with lock:
        engine.store.flush()
    view = StoreView(engine.data_dir)
    try:
        yield view
    finally:
        view.close()


def mount(app: FastAPI, engine, lock, results: list[str]) -> None:
    """Add the console's JSON routes to ``app`` (``results``: folders of offline reports)."""
    read = {"openapi_extra": {"x-scope": "read", "security": [{"bearer": []}]},
            "tags": ["console"]}
    with lock:
        insight.ensure_indexes(engine.store)

    @app.get("/v1/decisions/{eventId}", **read)
    def decision(eventId: str):  # noqa: N803 - the API's name for a decision id
        with _log(engine, lock) as log:
            found = insight.decision(log, eventId)
        if found is None:
            return error_response(404, "eventId", "no decision with this id")
        with lock:  # the attribution reads the variant's current policy
            return _json(explain(engine, *found))

    @app.get("/v1/users", **read)
    def users(prefix: str = Query("", max_length=256), limit: int = Query(20, ge=1, le=100)):
        if engine.pseudonyms is None:
            with _log(engine, lock) as log:
                return _json({"users": insight.find_users(log, prefix, limit)})
        # stored ids are pseudonyms: a user is found by their exact id, never listed
        with lock:
            found = bool(prefix) and engine.profile(prefix) is not None
        return _json({"users": [prefix] if found else []})

    @app.get("/v1/users/{user_id}/decisions", **read)
    def user_decisions(user_id: str, limit: int = Query(20, ge=1, le=200)):
        with _log(engine, lock) as log:
            rows = insight.user_decisions(log, engine.stored_id(user_id), limit)
        for row in rows:  # answered by the id asked for, not the stored pseudonym
            row["user_id"] = user_id
        return _json({"decisions": rows})

    @app.get("/v1/users/{user_id}/history", **read)
    def user_history(user_id: str, points: int = Query(24, ge=2, le=200)):
        with lock:
            profile = engine.profile(user_id)
        with _log(engine, lock) as log:
            return _json(insight.interest_history(
                log, engine.event_types, engine.config.profile, engine.stored_id(user_id),
                points, windows=profile["drift"]["windows"] if profile else ()))

    @app.get("/v1/live", **read)
    def live(minutes: int = Query(60, ge=1, le=1440)):
        with lock:
            stats = engine.stats()
        with _log(engine, lock) as log:
            return _json({**insight.live(log, minutes), "stats": stats,
                          "variants": list(engine.learners)})

    @app.get("/v1/experiments/history", **read)
    def history(points: int = Query(20, ge=2, le=200)):
        """What the engine compares (``ab``: variants; ``rollout``: a challenger), and the
        A/B report's figures over time where there is an A/B test."""
        ab = len(engine.learners) >= 2
        with _log(engine, lock) as log:
            return _json({"ab": ab, "rollout": engine.rollout is not None,
                          "points": insight.report_history(log, engine._weights, points)
                          if ab else [], "decisions": insight.decision_counts(log)})

    @app.get("/v1/reports", **read)
    def reports():
        return _json({"reports": find_reports(results)})

    @app.get("/ui/files/{report:path}", include_in_schema=False,
             openapi_extra={"x-scope": "read"})
    def files(report: str):
        report, _, name = report.rpartition("/")
        path = report_file(results, report, name)
        if path is None:
            return Response(status_code=404)
        return FileResponse(path, media_type=FILE_TYPES[path.suffix],
                            headers={"x-content-type-options": "nosniff"})
