"""skyhop's own SSH key pair: put on every machine skyhop creates, used to reach it."""

from __future__ import annotations

import os
from pathlib import Path

from skyhop import paths

KEY_NAME = "skyhop-key"


def key_path() -> Path:
    return paths.home() / "keys" / KEY_NAME


def ensure_key() -> tuple[Path, str]:
    """(private key path, public key in OpenSSH format), generating the pair once."""
    private = key_path()
    public = private.with_suffix(".pub")
    if not private.exists():
        import asyncssh

        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="skyhop")
        tmp = private.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
        public.write_bytes(key.export_public_key())
        os.replace(tmp, private)  # two launches at once: one key wins, both read it
    return private, public.read_text().strip()
