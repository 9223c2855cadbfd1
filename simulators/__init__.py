"""Loopwise simulators package."""
