"""Simulated providers driven by real availability traces on a virtual clock."""
