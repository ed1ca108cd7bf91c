"""Managed jobs: run a task to completion across preemptions, and the spot policies that decide
spot or on-demand for it under a deadline."""
