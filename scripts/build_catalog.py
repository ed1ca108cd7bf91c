#!/usr/bin/env python3
"""Rebuild the shipped catalog (src/skyhop/catalog/data/) from the real public catalogs.

    python scripts/build_catalog.py [PATH/TO/shared/data]

Defaults to ../shared/data beside the repository. See src/skyhop/catalog/build.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from skyhop.catalog.build import main

if __name__ == "__main__":
    raise SystemExit(main())
