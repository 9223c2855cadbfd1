"""Loopwise experiments package."""
