"""Secret values of managed jobs, encrypted at rest.

A managed job needs its secrets again at every recovery, possibly in a new controller
process, so they must be stored; they are stored encrypted (Fernet: AES-128-CBC + HMAC)
with a key that lives only in `$SKYHOP_HOME/keys/secrets.key` (mode 0600), never in the
database. A shared PostgreSQL therefore never sees them in clear.
"""

from __future__ import annotations

import json
import os

from skyhop import paths


def _fernet():
    from cryptography.fernet import Fernet

    path = paths.home() / "keys" / "secrets.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
        os.replace(tmp, path)
    return Fernet(path.read_bytes())


def seal(values: dict[str, str]) -> str | None:
    if not values:
        return None
    return _fernet().encrypt(json.dumps(values).encode()).decode()


def unseal(token: str | None) -> dict[str, str]:
    if not token:
        return {}
    return json.loads(_fernet().decrypt(token.encode()))
