"""Real OpenSSH hosts for the tests: each a network namespace with its own address, hostname,
home directory and `sshd` (adapted from ../shared/recipes/netns_sshd_up.sh).

All hosts hang off one bridge, `sh-br0` (10.213.0.1/16), so a host may take any address in
10.213.0.0/16: the SSH pool uses 10.213.0.11.., and the AWS tests give each moto instance a
host at the private IP moto assigned it. Needs root, `ip` and `sshd`; `unavailable_reason()`
says what is missing so tests can skip with a clear reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "sh-br0"
BRIDGE_ADDRESS = "10.213.0.1/16"
USER = "shuser"
SSHD = "/usr/sbin/sshd"
# The commands these hosts need, and the Debian package each comes in (named in README).
TOOL_PACKAGES = {"ip": "iproute2", "unshare": "util-linux", "ssh": "openssh-client",
                 "ssh-keygen": "openssh-client", "rsync": "rsync"}


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if not os.path.exists(SSHD):
        return "OpenSSH server is not installed (apt-get install -y openssh-server)"
    for tool, package in TOOL_PACKAGES.items():
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y {package})"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Host:
    index: int
    address: str
    dir: Path
    namespace: str
    veth: str
    sshd_pid: int | None = None

    @property
    def home(self) -> Path:
        return self.dir / "home"


class SSHHosts:
    """Bring hosts up and down; `close()` removes every namespace and link it made."""

    def __init__(self, base: Path):
        self.base = base
        self.hosts: dict[str, Host] = {}
        self._lock = threading.Lock()
        self._next = 0
        self.client_key = base / "client_key"
        self.authorized: list[str] = []
        self._made_bridge = False

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> SSHHosts:
        self.base.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            _sh("useradd", "-m", "-s", "/bin/bash", USER)
            _sh("usermod", "-p", "*", USER)  # a locked account refuses key logins
        if not self.client_key.exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key))
        self.authorized.append(self.client_key.with_suffix(".pub").read_text().strip())
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode:
            _sh("ip", "link", "add", BRIDGE, "type", "bridge")
            _sh("ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE)
            _sh("ip", "link", "set", BRIDGE, "up")
            self._made_bridge = True
        return self

    def close(self) -> None:
        for address in list(self.hosts):
            self.remove(address)
        # Another test session (a second pytest here) may have hosts on it by now.
        users = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE],
                               capture_output=True, text=True).stdout.strip()
        if self._made_bridge and not users:
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)

    def __enter__(self) -> SSHHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hosts --------------------------------------------------------------------------
    def add(self, address: str, extra_keys: list[str] = (), path: str | None = None,
            disk: Path | None = None) -> Host:
        """A host at `address`. `path`: the PATH of its SSH sessions (sshd's SetEnv);
        `disk`: a directory that outlives the host (its home and host key), so adding it
        again is the same machine rebooted; by default each host is a new machine."""
        with self._lock:
            self._next += 1
            index = self._next
        ns = f"sh-{os.getpid() % 10000}-h{index}"
        veth = f"sh-{os.getpid() % 10000}v{index}"[:15]
        d = disk or self.base / f"h{index}"
        host = Host(index, address, d, ns, veth)
        (d / "home" / ".ssh").mkdir(parents=True, exist_ok=True)
        hostkey = d / "hostkey"
        if not hostkey.exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        (d / "home" / ".ssh" / "authorized_keys").write_text(
            "\n".join([*self.authorized, *extra_keys]) + "\n")
        _sh("chown", "-R", f"{USER}:{USER}", str(d / "home"))
        os.chmod(d / "home" / ".ssh", 0o700)
        (d / "sshd_config").write_text(f"""ListenAddress {address}
Port 22
HostKey {hostkey}
PidFile {d}/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 50
LogLevel ERROR
""" + (f"SetEnv PATH={path}\n" if path else ""))
        (d / "sshd.pid").unlink(missing_ok=True)
        try:
            self._start(host, d)
        except BaseException:  # never leave a half-made host behind
            with self._lock:
                self.hosts[address] = host
            self.remove(address)
            raise
        with self._lock:
            self.hosts[address] = host
        return host

    def _start(self, host: Host, d: Path) -> None:
        ns, veth, address = host.namespace, host.veth, host.address
        # The address may have been another machine's (another MAC): forget that neighbour.
        subprocess.run(["ip", "neigh", "flush", "to", address], capture_output=True)
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{address}/16", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", BRIDGE_ADDRESS.split("/")[0]]):
            _sh("ip", "netns", "exec", ns, *cmd)
        home = f"/home/{USER}"
        # Own hostname and mount namespace: each host sees its own /home/shuser.
        _sh("ip", "netns", "exec", ns, "unshare", "--uts", "--mount", "--propagation",
            "private", "sh", "-c", f"hostname {ns}; mount --bind {d}/home {home}; "
            f"exec {SSHD} -f {d}/sshd_config -E {d}/sshd.log")
        deadline = time.monotonic() + 10
        pid_file = d / "sshd.pid"
        while True:
            with contextlib.suppress(OSError), socket.create_connection((address, 22), 0.5):
                if pid_file.exists() and pid_file.read_text().strip():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {address} did not come up: "
                                   f"{(d / 'sshd.log').read_text(errors='replace')}")
            time.sleep(0.02)
        host.sshd_pid = int(pid_file.read_text())

    def remove(self, address: str) -> None:
        """The machine is gone: its sshd, sessions and processes die with the namespace."""
        with self._lock:
            host = self.hosts.pop(address, None)
        if host is None:
            return
        for pid in _pids_in_namespace(host.namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", host.veth], capture_output=True)

    def partition(self, address: str, down: bool = True) -> None:
        """Cut (or restore) a host's link: it stays alive but unreachable."""
        host = self.hosts[address]
        _sh("ip", "link", "set", host.veth, "down" if down else "up")


def _pids_in_namespace(namespace: str) -> list[int]:
    """Our processes in that namespace (the sshd we started and what it spawned)."""
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if p.isdigit()]
