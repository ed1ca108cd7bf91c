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


# -- per-cluster node-to-node keys ------------------------------------------------------
# A multi-node cluster's head reaches its workers with a key pair made for that cluster
# alone: never the user's own key nor skyhop's, so a node holds nothing that opens any
# other machine. The public part is authorized on every node; on the user's own machines
# (SSH pools) it is removed again on `down`, found by its comment.


def _cluster_key_dir() -> Path:
    return paths.home() / "keys" / "clusters"


def cluster_key_path(cluster: str) -> Path:
    """Where the cluster's private key lives on the client (0600), checked to stay there."""
    from skyhop.names import check_name, path_under

    return path_under(_cluster_key_dir(), check_name(cluster, "cluster"))


def cluster_key_comment(cluster: str) -> str:
    """The comment of a cluster's public key: which home and cluster authorized it."""
    return f"skyhop-cluster:{paths.home_id()}:{cluster}"


def ensure_cluster_key(cluster: str) -> tuple[Path, str]:
    """(private key path, public key line) of the cluster's own pair, made on first use."""
    private = cluster_key_path(cluster)
    public = private.with_name(private.name + ".pub")
    if not (private.exists() and public.exists()):
        import asyncssh

        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519",
                                            comment=cluster_key_comment(cluster))
        tmp = private.with_name(f".{private.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
        public.write_bytes(key.export_public_key())
        os.replace(tmp, private)
    return private, public.read_text().strip()


def remove_cluster_key(cluster: str) -> None:
    """Forget the cluster's pair on the client (its nodes are gone or released)."""
    try:
        private = cluster_key_path(cluster)
    except ValueError:
        return
    private.unlink(missing_ok=True)
    private.with_name(private.name + ".pub").unlink(missing_ok=True)


def authorize_command(public_key: str) -> str:
    """A shell line adding `public_key` to the node's authorized_keys, once."""
    import shlex

    key = shlex.quote(public_key)
    return ("umask 077; mkdir -p ~/.ssh && touch ~/.ssh/authorized_keys && "
            f"{{ grep -qxF {key} ~/.ssh/authorized_keys || "
            f"printf '%s\\n' {key} >> ~/.ssh/authorized_keys; }}")


def deauthorize_command(cluster: str) -> str:
    """A shell line removing the cluster's public key (by its comment) from the node's
    authorized_keys, keeping the file (and its mode) in place."""
    import shlex

    comment = shlex.quote(cluster_key_comment(cluster))
    return ("f=~/.ssh/authorized_keys; [ ! -f \"$f\" ] || { "
            f"awk -v c={comment} '$NF != c' \"$f\" > \"$f.skyhop-tmp\" && "
            "cat \"$f.skyhop-tmp\" > \"$f\"; rm -f \"$f.skyhop-tmp\"; }")
