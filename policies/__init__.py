"""Loopwise policies package."""
