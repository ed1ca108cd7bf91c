"""Observed availability: attempts, outcomes, and decaying estimates per location."""

from skyhop.tracker.tracker import OK, Attempt, Estimate, Key, Tracker

__all__ = ["OK", "Attempt", "Estimate", "Key", "Tracker"]
