"""The one way a store gets its database engine: given, or the default one on first use.

SQLAlchemy and the migrations are imported only then, so a store can be made (and its
stdlib read paths used) without paying for them.
"""

from __future__ import annotations

from typing import Any


class UsesEngine:
    def __init__(self, engine: Any = None):
        self._engine = engine

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from skyhop.state import db

            self._engine = db.engine()
        return self._engine
