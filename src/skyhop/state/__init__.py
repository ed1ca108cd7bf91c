"""Durable state: clusters, nodes, usage, events (SQLAlchemy Core; SQLite or PostgreSQL)."""
