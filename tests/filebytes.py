"""Searching a data directory's files for bytes while an engine in this process has them open.

Closing a file descriptor drops every POSIX lock its process holds on that file, SQLite's
included (sqlite.org/howtocorrupt.html, section 2.2): reading ``loopwise.sqlite`` or its
``-shm`` from the engine's own process silently unlocks the engine's connections, and the
writer process may then re-initialise the shared memory the engine has mapped (the engine
dies of a bus error). The files are therefore read by a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SEARCH = """
import json, pathlib, sys
root, needles = pathlib.Path(sys.argv[1]), [bytes.fromhex(h) for h in sys.argv[2:]]
hits = {}
for path in sorted(p for p in root.rglob("*") if p.is_file()):
    data = path.read_bytes()
    found = [n.hex() for n in needles if n in data]
    if found:
        hits[str(path.relative_to(root))] = found
print(json.dumps(hits))
"""


def files_holding(root: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """Every file under ``root`` (every byte of it) that holds any of ``needles``: its path
    relative to ``root`` and the needles found in it."""
    out = subprocess.run([sys.executable, "-S", "-c", _SEARCH, str(root),
                          *(n.hex() for n in needles)],
                         capture_output=True, text=True, check=True).stdout
    return {k: [bytes.fromhex(h) for h in v] for k, v in json.loads(out).items()}


def holding(root: Path, needle: bytes) -> list[str]:
    """Names of the files under ``root`` that hold ``needle``."""
    return sorted(Path(k).name for k in files_holding(root, [needle]))
