"""Loopwise engine package."""
