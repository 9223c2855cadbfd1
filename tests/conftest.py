"""Shared pytest configuration."""

from __future__ import annotations

import os

# Keep torch and BLAS from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
