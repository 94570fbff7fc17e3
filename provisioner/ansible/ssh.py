"""SSH checks with paramiko: reachability, readiness waits, and host keys pinned per cluster.

Host keys: the first time this tool reaches a node of a cluster, the node's key is recorded in the cluster's
known-hosts file (``<home>/known_hosts/<cluster>``, OpenSSH format, 0600). From then on a different key for the
same address is refused with :class:`HostKeyChanged` -- never silently accepted -- and Ansible (OpenSSH) is
pointed at the same file with ``StrictHostKeyChecking=accept-new`` (it records a key it meets first in that file
itself, and refuses a changed one: the same rule). Workers without a public address are reached through
the front-end (a ``direct-tcpip`` channel, as ``ssh -J`` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.ansible.inventory import Host, Inventory, known_hosts_path
from provisioner.errors import HostKeyChanged, HostsUnreachable, OperationTimeout
from provisioner.polling import PollSchedule, wait_until
from provisioner.privfs import ensure_private_dir

if TYPE_CHECKING:
    import paramiko

DEFAULT_CONNECT_TIMEOUT = 10.0
SSH_SCHEDULE = PollSchedule(initial=1.0, growth=0.25, cap=10.0, jitter=0.1)


@dataclass(frozen=True)
class SSHResult:
    """One node's SSH check (:func:`check_host`): whether it logged in and ran ``true``, the line saying so, and
    whether its host key was pinned now or refused as changed."""

    host: str
    address: str
    ok: bool
    detail: str
    seconds: float = 0.0
    new_key: bool = False
    key_changed: bool = False  # refused: the host's (or its jump host's) key is not the pinned one
    given_up: bool = False  # wait_ready stopped waiting for it (the connection was refused)


@dataclass(frozen=True)
class CommandResult:
    """What a command run on a node over SSH (:func:`run_command`) gave back: its exit status and its output."""

    host: str
    exit_status: int
    stdout: str
    stderr: str


def fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint)


class HostKeyPins:
    """The known-hosts file of one cluster: record on first contact, refuse a changed key."""

    def __init__(self, home: Path, cluster: str) -> None:
        self.path = known_hosts_path(home, cluster)
        self.cluster = cluster
        self._lock = threading.Lock()
        self.recorded: list[str] = []

    def _load(self) -> paramiko.HostKeys:
        import paramiko

        keys = paramiko.HostKeys()
        if self.path.exists():
            keys.load(str(self.path))
        return keys

    def pinned_types(self, endpoint: str) -> set[str]:
        with self._lock:
            known = self._load().lookup(endpoint)
        return set(known.keys()) if known is not None else set()

    def check_or_record(self, endpoint: str, key: paramiko.PKey) -> bool:
        """True when ``key`` was recorded now (first contact); raise :class:`HostKeyChanged` on a different key."""
        with self._lock:
            keys = self._load()
            known = keys.lookup(endpoint)
            if known is not None and len(known):
                if known.get(key.get_name()) == key:
                    return False
                # A different key, or a key type other than the pinned ones (we only negotiate pinned types).
                old = next(iter(known.values()))
                raise HostKeyChanged(
                    f"host key of {endpoint} (cluster {self.cluster}) changed: pinned {fingerprint(old)}, "
                    f"now {fingerprint(key)}; refusing to connect",
                    hint=f"if the node was really replaced, drop the old key with: "
                    f"ssh-keygen -R '{endpoint}' -f {self.path}",
                )
            keys.add(endpoint, key.get_name(), key)
            ensure_private_dir(self.path.parent)
            from provisioner.privfs import write_secret_file

            tmp = self.path.with_name(f".{self.path.name}.new")
            keys.save(str(tmp))
            write_secret_file(self.path, tmp.read_text(encoding="utf-8"))
            tmp.unlink(missing_ok=True)
            self.recorded.append(endpoint)
            return True


def _pinned_only(pinned_types: set[str]) -> dict[str, list[str]]:
    """paramiko options that make the server prove the pinned key type (not a new, unpinned one)."""
    import paramiko

    allowed = set(pinned_types)
    if "ssh-rsa" in allowed:
        allowed |= {"rsa-sha2-256", "rsa-sha2-512"}
    preferred = list(getattr(paramiko.Transport, "_preferred_keys", ()))
    return {"keys": [name for name in preferred if name not in allowed]}


def _connect(host: Host, pins: HostKeyPins, timeout: float, sock: object | None = None) -> paramiko.SSHClient:
    import paramiko

    class _Pin(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            pins.check_or_record(host.endpoint, key)

    client = paramiko.SSHClient()
    # Known keys are checked by our policy too, so that a mismatch raises our error with the hint.
    client.set_missing_host_key_policy(_Pin())
    known = pins.pinned_types(host.endpoint)
    try:
        client.connect(
            hostname=host.address,
            port=host.port,
            username=host.user,
            key_filename=str(host.key_file) if host.key_file else None,
            password=host.password,
            sock=sock,  # type: ignore[arg-type]
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            disabled_algorithms=_pinned_only(known) if known else None,
        )
    except BaseException:
        client.close()
        raise
    return client


@contextlib.contextmanager
def session(
    inv: Inventory, host: Host, pins: HostKeyPins, timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> Iterator[paramiko.SSHClient]:
    """An SSH connection to ``host`` (through its jump host when it has one)."""
    opened: list[paramiko.SSHClient] = []
    try:
        sock = None
        if host.jump:
            jump = _connect(inv.host(host.jump), pins, timeout)
            opened.append(jump)
            transport = jump.get_transport()
            assert transport is not None
            sock = transport.open_channel("direct-tcpip", (host.address, host.port), ("127.0.0.1", 0), timeout=timeout)
        client = _connect(host, pins, timeout, sock)
        opened.append(client)
        yield client
    finally:
        for client in reversed(opened):
            client.close()


def check_host(
    inv: Inventory,
    host: Host,
    pins: HostKeyPins,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    *,
    report_key_changes: bool = False,
) -> SSHResult:
    """Connect, authenticate and run ``true``. Never raises for an unreachable node. A changed host key raises
    :class:`HostKeyChanged`, or, with ``report_key_changes``, is a failed result (``key_changed``) whose detail
    has the refusal and the ``ssh-keygen -R`` line (for a report that goes on with the other checks)."""
    import paramiko

    started = time.monotonic()
    where = f"{host.user}@{host.endpoint}" + (f" via {host.jump}" if host.jump else "")
    before = len(pins.recorded)
    try:
        with session(inv, host, pins, timeout) as client:
            _, stdout, _ = client.exec_command("true", timeout=timeout)
            status = stdout.channel.recv_exit_status()
        detail = f"{where}: answers SSH" if status == 0 else f"{where}: logged in, but 'true' exited {status}"
        ok = status == 0
    except HostKeyChanged as exc:
        if not report_key_changes:
            raise
        detail = f"{where}: {exc.message}" + (f"; {exc.hint}" if exc.hint else "")
        return SSHResult(host.name, host.endpoint, False, detail, time.monotonic() - started, key_changed=True)
    except paramiko.AuthenticationException as exc:
        ok, detail = False, f"{where}: authentication refused ({exc})"
    except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
        ok, detail = False, f"{where}: {_describe(exc)}"
    return SSHResult(host.name, host.endpoint, ok, detail, time.monotonic() - started, len(pins.recorded) > before)


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError: one error per address tried
    if isinstance(inner, dict) and inner:
        exc = next(iter(inner.values()))
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def check_all(
    inv: Inventory,
    pins: HostKeyPins,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    hosts: list[Host] | None = None,
    *,
    report_key_changes: bool = False,
) -> list[SSHResult]:
    """Check every host (concurrently; the front-end first, so that its key is pinned before jumps use it).

    A changed host key raises :class:`HostKeyChanged` unless ``report_key_changes`` (see :func:`check_host`)."""
    targets = list(hosts if hosts is not None else inv.hosts)
    direct = [h for h in targets if not h.jump]
    jumped = [h for h in targets if h.jump]
    results: dict[str, SSHResult] = {}
    for batch in (direct, jumped):
        if not batch:
            continue
        with ThreadPoolExecutor(max_workers=min(16, len(batch))) as pool:
            check = functools.partial(
                check_host, inv, pins=pins, timeout=timeout, report_key_changes=report_key_changes
            )
            for result in pool.map(check, batch):
                results[result.host] = result
    return [results[h.name] for h in targets]


CLOUD_SSH_HINT = "check the nodes' security groups allow SSH (22) from here and through the front-end"


def refused(result: SSHResult) -> bool:
    """Whether the host actively refused the TCP connection (nothing listens there), as opposed to no answer."""
    return not result.ok and result.detail.endswith(": connection refused")


def awaited(results: list[SSHResult]) -> list[SSHResult]:
    """The hosts of a wait_ready round still being waited for: not answering, and not given up on."""
    return [r for r in results if not r.ok and not r.given_up]


def wait_ready(
    inv: Inventory,
    pins: HostKeyPins,
    *,
    timeout: float,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    on_tick: Callable[[list[SSHResult]], None] | None = None,
    refused_is_final: bool = False,
    hint: str = CLOUD_SSH_HINT,
) -> list[SSHResult]:
    """Wait until every node answers SSH; raise :class:`OperationTimeout` naming the ones that never did.

    With ``refused_is_final`` (hosts that are already up, e.g. an edge inventory), a refused connection ends that
    host's wait at once: nothing listens on its SSH port, and waiting will not change that (a host that does not
    answer at all is still waited for, until ``timeout``). Once no host is left to wait for,
    :class:`HostsUnreachable` names the refused ones. (A booting cloud VM may refuse before its sshd starts: there,
    a refusal is waited out like no answer.) ``hint`` is the error's hint. ``on_tick`` gets every host's last
    result after each round; :func:`awaited` picks the ones still waited for."""
    ready: dict[str, SSHResult] = {}
    last: dict[str, SSHResult] = {}
    given_up: dict[str, SSHResult] = {}
    per_try = min(connect_timeout, max(timeout, 1.0))

    def check() -> list[SSHResult] | None:
        pending = [h for h in inv.hosts if h.name not in ready and h.name not in given_up]
        for result in check_all(inv, pins, per_try, pending):
            last[result.host] = result
            if result.ok:
                ready[result.host] = result
            elif refused_is_final and refused(result):
                given_up[result.host] = last[result.host] = dataclasses.replace(result, given_up=True)
        if on_tick is not None:
            on_tick([last[h.name] for h in inv.hosts if h.name in last])
        if len(ready) == len(inv.hosts):
            return [ready[h.name] for h in inv.hosts]
        if len(ready) + len(given_up) == len(inv.hosts):
            refusals = "; ".join(given_up[h.name].detail for h in inv.hosts if h.name in given_up)
            raise HostsUnreachable(f"SSH refused: {refusals}", hint=hint)
        return None

    try:
        return wait_until(
            check,
            timeout=timeout,
            clock=clock,
            sleep=sleep,
            rand=rand,
            schedule=SSH_SCHEDULE,
            what="SSH on every node",
        )
    except OperationTimeout:
        missing = [last[h.name].detail for h in inv.hosts if h.name not in ready and h.name in last]
        raise OperationTimeout(
            f"timed out after {timeout:g} s waiting for SSH; not answering: {'; '.join(missing)}",
            hint=hint,
        ) from None


def run_command(
    inv: Inventory, host: Host, pins: HostKeyPins, command: str, *, timeout: float = 60.0, stdin: str | None = None
) -> CommandResult:
    """Run ``command`` on ``host`` and collect its output (for verify: kubectl). ``stdin`` is written to the
    command's standard input, which is then closed (e.g. a password for ``sudo -S``: never on a command line)."""
    with session(inv, host, pins, min(timeout, DEFAULT_CONNECT_TIMEOUT)) as client:
        stdin_file, stdout, stderr = client.exec_command(command, timeout=timeout)
        if stdin is not None:
            stdin_file.write(stdin)
            stdin_file.flush()
        stdin_file.channel.shutdown_write()
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        status = stdout.channel.recv_exit_status()
    return CommandResult(host.name, status, out, err)
