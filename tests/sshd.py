"""Real SSH hosts for the tests: Debian's OpenSSH server, started on loopback addresses with generated keys.

Each :class:`SSHHost` is one ``sshd -D`` process listening on its own 127.0.0.x address and port, with its own
ed25519 host key, accepting one generated client key for the current user. Only inside the tests' loopback-only
network namespace (any 127.0.0.0/8 address works on ``lo``). ``.ci/system-deps`` installs openssh-server.

A host without a public address is modelled with a network namespace of its own (``private=True``): its sshd
listens on the loopback of that namespace, so from the tests' namespace its address answers "connection
refused". A front-end given ``sessions_in=<that host>`` accepts connections here, on its own address, and serves
each one with ``sshd -i`` started inside the private host's namespace: its sessions (and the ``direct-tcpip``
channels of an SSH jump) reach the private host, nothing else does.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import threading
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


def _listening(pid: int, address: str, port: int) -> bool:
    """Whether a TCP socket listens on address:port in the network namespace of process ``pid``."""
    a, b, c, d = (int(part) for part in address.split("."))
    wanted = f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in lines)


@dataclass
class SSHHost:
    name: str
    address: str
    port: int
    directory: Path
    client_key: Path
    user: str = field(default_factory=getpass.getuser)
    log_level: str = "ERROR"  # DEBUG1 logs forwarded (direct-tcpip) connections: proof that a jump went through
    env: dict[str, str] = field(default_factory=dict)  # SetEnv: variables of every session (e.g. PATH with stubs)
    private: bool = False  # in a network namespace of its own: unreachable from the tests' namespace
    sessions_in: SSHHost | None = None  # serve sessions inside that (private) host's namespace
    proc: subprocess.Popen[bytes] | None = None
    _listener: socket.socket | None = field(default=None, repr=False)
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def _configure(self) -> Path:
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
                    # One line: sshd keeps only the first SetEnv directive.
                    *([" ".join(["SetEnv", *(f'"{k}={v}"' for k, v in self.env.items())])] if self.env else []),
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        return config

    def netns(self) -> str:
        """The network namespace of this (private) host, for nsenter."""
        assert self.private and self.proc is not None, f"{self.name} has no network namespace of its own"
        return f"/proc/{self.proc.pid}/ns/net"

    def start(self) -> SSHHost:
        config = self._configure()
        if self.sessions_in is not None:
            return self._start_inetd(config)
        # -E: log to a file (with -e, debug lines would reach the SSH sessions' stderr).
        argv = [str(SSHD), "-D", "-E", str(self.log), "-f", str(config)]
        if self.private:
            # unshare execs sh, which execs sshd: one process, whose namespace the front-end's sessions join.
            argv = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sshd", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {self.log.read_text() if self.log.exists() else ''}")
            if self.private:
                if _listening(self.proc.pid, self.address, self.port):
                    return self
                time.sleep(0.05)
                continue
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd {self.name} did not answer on {self.address}:{self.port}")

    def _start_inetd(self, config: Path) -> SSHHost:
        assert self.sessions_in is not None
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(64)
        self._listener = listener
        argv = ["nsenter", f"--net={self.sessions_in.netns()}", "--", str(SSHD), "-i", "-E", str(self.log)]
        argv += ["-f", str(config)]

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # closed by stop()
                with conn:
                    child = subprocess.Popen(argv, stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL)
                self._children = [c for c in self._children if c.poll() is None] + [child]

        self._thread = threading.Thread(target=serve, name=f"sshd-{self.name}", daemon=True)
        self._thread.start()
        with socket.create_connection((self.address, self.port), timeout=10) as s:
            s.settimeout(10)
            if not s.recv(4).startswith(b"SSH-"):
                raise RuntimeError(f"sshd {self.name} (inetd mode) did not answer: {self.log.read_text()}")
        return self

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
            if self._thread is not None:
                self._thread.join(5)
        for child in [*self._children, *([self.proc] if self.proc is not None else [])]:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(5)
        self._children = []
        self.proc = None

    def replace_host_key(self) -> None:
        """Give the host a new identity (as a rebuilt VM would have): restart with a fresh host key."""
        self.stop()
        for suffix in ("", ".pub"):
            Path(f"{self.host_key}{suffix}").unlink(missing_ok=True)
        self.start()


def sshd_available() -> bool:
    return (
        SSHD.exists()
        and shutil.which("ssh") is not None
        and shutil.which("nsenter") is not None
        and shutil.which("unshare") is not None
        and os.geteuid() == 0
    )
