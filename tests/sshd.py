"""Real SSH hosts for the tests: Debian's OpenSSH server, started on loopback addresses with generated keys.

Each :class:`SSHHost` is one ``sshd -D`` process listening on its own 127.0.0.x address and port, with its own
ed25519 host key, accepting one generated client key for the current user. Only inside the tests' loopback-only
network namespace (any 127.0.0.0/8 address works on ``lo``). ``.ci/system-deps`` installs openssh-server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def keygen(path: Path, comment: str = "provision-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path


@dataclass
class SSHHost:
    name: str
    address: str
    port: int
    directory: Path
    client_key: Path
    user: str = field(default_factory=getpass.getuser)
    log_level: str = "ERROR"  # DEBUG1 logs forwarded (direct-tcpip) connections: proof that a jump went through
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    def start(self) -> SSHHost:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, f"host-{self.name}")
        authorized = self.directory / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o600)
        config = self.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "PermitTunnel no",
                    "X11Forwarding no",
                    "PrintMotd no",
                    f"LogLevel {self.log_level}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        # -E: log to a file (with -e, debug lines would reach the SSH sessions' stderr).
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-E", str(self.directory / "sshd.log"), "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {(self.directory / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd {self.name} did not answer on {self.address}:{self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def replace_host_key(self) -> None:
        """Give the host a new identity (as a rebuilt VM would have): restart with a fresh host key."""
        self.stop()
        for suffix in ("", ".pub"):
            Path(f"{self.host_key}{suffix}").unlink(missing_ok=True)
        self.start()


def sshd_available() -> bool:
    return SSHD.exists() and shutil.which("ssh") is not None and os.geteuid() == 0


def start_hosts(
    directory: Path, names: list[str], client_key: Path, first_octet: int = 2, log_levels: dict[str, str] | None = None
) -> list[SSHHost]:
    hosts = []
    for i, name in enumerate(names):
        address = f"127.0.0.{first_octet + i}"
        level = (log_levels or {}).get(name, "ERROR")
        hosts.append(SSHHost(name, address, 22, directory / name, client_key, log_level=level).start())
    return hosts
