"""One module per provider. Each is imported only when used (see provision/registry.py)."""
