"""Real SSH hosts on loopback for the demo: Debian's sshd, one per 127.0.0.x address, with generated keys.

``python -m standin.sshd --dir D --host NAME=127.0.x.y [--host ...] --inventory F --ready-file R`` starts one
``sshd -D`` per host on a free port of its address (the tests' :class:`tests.sshd.SSHHost`, run here without
pytest), each with an ed25519 host key of its own and accepting one generated client key (``D/client_key``) for
the current user; writes F, an Ansible inventory of them (the first host in group ``front``, the others in
``wn``), then R (JSON: ``{"hosts": {NAME: {"address", "port"}}, "client_key", "user", "inventory"}``), and serves
until SIGTERM (or Ctrl-C), when every sshd is stopped, the sessions it serves first: a client's connection closes
with them (an SSH multiplexing master Ansible left behind, ``ControlPersist``, exits then instead of a minute later).
Root only, inside a loopback-only network namespace (``.ci/netns``), as the tests' SSH lab.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import yaml

from tests.sshd import SSHHost, free_port, keygen, sshd_available


def host_arg(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name or not address.startswith("127."):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=127.x.y.z (a loopback address)")
    return name, address


def inventory(hosts: list[SSHHost], client_key: Path) -> dict[str, object]:
    def entry(host: SSHHost) -> dict[str, object]:
        return {"ansible_host": host.address, "ansible_port": host.port}

    first, *rest = hosts
    return {
        "all": {
            "vars": {
                "ansible_user": first.user,
                "ansible_ssh_private_key_file": str(client_key),
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {
                "front": {"hosts": {first.name: entry(first)}},
                "wn": {"hosts": {host.name: entry(host) for host in rest}},
            },
        }
    }


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (sshd's per-connection processes for its master)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; the fields after the last ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def stop(host: SSHHost) -> None:
    """Stop ``host``'s sessions, then its sshd."""
    if host.proc is not None:
        for pid in children(host.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    host.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Debian's sshd on loopback addresses, with generated keys.")
    parser.add_argument("--dir", type=Path, required=True, help="where the keys, configs and logs go")
    parser.add_argument("--host", type=host_arg, action="append", required=True, help="NAME=127.x.y.z (repeatable)")
    parser.add_argument("--inventory", type=Path, required=True, help="write an Ansible inventory of the hosts here")
    parser.add_argument("--ready-file", type=Path, required=True, help="write the hosts here (JSON) once serving")
    args = parser.parse_args()
    if not sshd_available():
        parser.error("needs root, /usr/sbin/sshd, ssh, nsenter and unshare (see .ci/system-deps)")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    args.dir.mkdir(parents=True, exist_ok=True)
    key = keygen(args.dir / "client_key", "provision-demo")
    started: list[SSHHost] = []
    try:
        for name, address in args.host:
            host = SSHHost(name, address, free_port(address), args.dir / name, key)
            started.append(host.start())
        args.inventory.write_text(yaml.safe_dump(inventory(started, key), sort_keys=False))
        ready = {
            "hosts": {host.name: {"address": host.address, "port": host.port} for host in started},
            "client_key": str(key),
            "user": started[0].user,
            "inventory": str(args.inventory),
        }
        partial = args.ready_file.with_name(args.ready_file.name + ".part")
        partial.write_text(json.dumps(ready) + "\n")
        partial.replace(args.ready_file)
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped.wait(0.5):
                pass
    finally:
        for host in reversed(started):
            stop(host)


if __name__ == "__main__":
    main()
