"""Ansible inventories: built from IM's VM info (or a user-written edge inventory), written as standard YAML.

An inventory has two groups, ``front`` (exactly one host: the Kubernetes control plane, or the K3s server) and
``wn`` (the workers, or the K3s agents). Every host carries ``ansible_host``, ``ansible_port``, ``ansible_user``
and, when the VM has one, a private key file (0600, kept under ``<home>/keys/<cluster>/``). A worker without a
public address is reached through the front-end as an SSH jump host (``ProxyCommand ssh -W``).

Host keys are checked explicitly: every SSH connection, ours (paramiko) and Ansible's (OpenSSH), uses the
cluster's own known-hosts file ``<home>/known_hosts/<cluster>``, trusting on first use: a host's key is recorded
there on first contact -- by :mod:`provisioner.ansible.ssh` before our runs, or by OpenSSH itself
(``StrictHostKeyChecking=accept-new``, OpenSSH >= 7.6) when a plain ``ansible-playbook`` reaches a host first --
and a changed key is refused by both. The file's directory is created (0700) when an inventory is written.
Ansible's jump through the front-end (``ProxyCommand ssh -W``, ``BatchMode=yes``) authenticates with a key only.

The written ``hosts.yml`` never holds a secret. A login password (a VM that IM gives only a password for) and
an edge host's ``ansible_become_password`` go to ``host_vars/<host>.yml`` next to the inventory, written 0600.

A user-written (edge) inventory keeps its hosts' ``ansible_become``/``ansible_become_user``, other variables,
and its own ``ansible_ssh_common_args`` (appended after ours) and ``ansible_ssh_extra_args``/``ansible_ssh_args``,
unless they set an option this module controls (host-key checking, the jump host): that is refused (exit 2), as
are the old alias names (``ansible_ssh_pass``, ``ansible_become_pass``...), which are named with their
replacement.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import InputError
from provisioner.model import Role
from provisioner.privfs import ensure_private_dir, write_secret_file

# The inventory's groups are the VM roles.
FRONT_GROUP = Role.FRONT.value
WORKER_GROUP = Role.WORKER.value
GROUPS = (FRONT_GROUP, WORKER_GROUP)
FRONT_HOST = "fe"  # the front-end's host name in generated inventories (not "front": that is the group's name)
DEFAULT_USER = "root"
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9:.%-]{1,253}")
_KNOWN_VARS = frozenset(
    {
        "ansible_host",
        "ansible_port",
        "ansible_user",
        "ansible_ssh_private_key_file",
        "ansible_password",
        "ansible_python_interpreter",
        "ansible_become",
        "ansible_become_user",
        "ansible_become_password",
        "provision_jump",
        "provision_vm_id",
        "ansible_ssh_common_args",  # merged with ours
        "ansible_ssh_extra_args",  # kept (checked)
        "ansible_ssh_args",  # kept (checked)
    }
)
# Old or alternative names of variables read above: refused with the name to use (a password under an alias would
# otherwise be written into hosts.yml, or silently not used).
_ALIASES = {
    "ansible_ssh_pass": "ansible_password",
    "ansible_ssh_password": "ansible_password",
    "ansible_ssh_user": "ansible_user",
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_become_pass": "ansible_become_password",
    "ansible_sudo_pass": "ansible_become_password",
    "ansible_private_key_file": "ansible_ssh_private_key_file",
    "ansible_sudo": "ansible_become",
    "ansible_sudo_user": "ansible_become_user",
}
# SSH options that carry the host-key pinning and the jump host: a user's own SSH arguments may not set them.
_CONTROLLED_SSH_OPTIONS = {
    name.lower(): name
    for name in (
        "UserKnownHostsFile",
        "GlobalKnownHostsFile",
        "StrictHostKeyChecking",
        "KnownHostsCommand",
        "HostKeyAlias",
        "ProxyCommand",
        "ProxyJump",
    )
}
_USER_SSH_ARGS = ("ansible_ssh_args", "ansible_ssh_extra_args")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class Host:
    """One node as Ansible and paramiko reach it."""

    name: str
    group: str
    address: str
    port: int = 22
    user: str = DEFAULT_USER
    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)
    jump: str | None = None  # the name of the host to jump through (the front-end), or None for direct
    vm_id: str | None = None
    python: str | None = None  # ansible_python_interpreter, when set
    extra: Mapping[str, Any] = field(default_factory=dict)  # other vars of a user-written inventory
    become: bool | None = None  # ansible_become of a user-written inventory (None: the playbooks' own choice)
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)  # ansible_become_password (host_vars, 0600)
    ssh_common_args: str | None = None  # the user's own ansible_ssh_common_args (appended after ours)

    @property
    def endpoint(self) -> str:
        """``address`` or ``[address]:port``, as known_hosts names a host."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Inventory:
    """One cluster's nodes as Ansible and paramiko reach them: a front-end and its workers, from IM's VM info or
    a user's edge inventory (written as ``hosts.yml``)."""

    cluster: str
    hosts: tuple[Host, ...]

    @property
    def front(self) -> Host:
        return next(h for h in self.hosts if h.group == FRONT_GROUP)

    @property
    def workers(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.group == WORKER_GROUP)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def secrets(self) -> list[str]:
        """Every login and become password of the inventory (never in hosts.yml; scanned for in artifacts)."""
        return [value for h in self.hosts for value in (h.password, h.become_password) if value]


def known_hosts_path(home: Path, cluster: str) -> Path:
    return Path(home) / "known_hosts" / cluster


def key_dir(home: Path, cluster: str) -> Path:
    return Path(home) / "keys" / cluster


def write_key(home: Path, cluster: str, name: str, key: str) -> Path:
    """Write a private key 0600 under ``<home>/keys/<cluster>/`` and return its path."""
    directory = key_dir(home, cluster)
    ensure_private_dir(directory)
    path = directory / f"{name}.pem"
    write_secret_file(path, key if key.endswith("\n") else key + "\n")
    return path


# --- from IM ----------------------------------------------------------------------------------------------------------


def from_vms(cluster: str, vms: Iterable[Any], home: Path) -> Inventory:
    """The inventory of an IM cluster from its VMs' info (:class:`provisioner.im.VMInfo`); writes the key files.

    The VM named ``front`` is the front-end (host ``fe``); every other VM is a worker named ``wn-<vm id>``.
    """
    hosts: list[Host] = []
    front_name: str | None = None
    ordered = sorted(vms, key=lambda vm: (vm.name != FRONT_GROUP, _id_key(vm.id)))
    for vm in ordered:
        if getattr(vm, "state", None) in ("deleting", "off"):
            continue
        is_front = vm.name == FRONT_GROUP and front_name is None
        name = FRONT_HOST if is_front else f"wn-{vm.id}"
        address = vm.public_ip or vm.private_ip
        if not address:
            continue
        creds = vm.credentials
        key_file = write_key(home, cluster, name, creds.private_key) if creds.private_key else None
        jump = None if is_front or vm.public_ip else front_name
        hosts.append(
            Host(
                name=name,
                group=FRONT_GROUP if is_front else WORKER_GROUP,
                address=address,
                user=creds.username or DEFAULT_USER,
                key_file=key_file,
                password=None if key_file else creds.password,
                jump=jump,
                vm_id=str(vm.id),
            )
        )
        if is_front:
            front_name = name
    if front_name is None:
        raise InputError(f"IM lists no reachable front-end VM for cluster {cluster!r}", field="NAME")
    return Inventory(cluster, tuple(hosts))


def _id_key(vm_id: str) -> tuple[int, str]:
    return (int(vm_id), "") if str(vm_id).isdigit() else (1 << 30, str(vm_id))


# --- writing ----------------------------------------------------------------------------------------------------------


# OpenSSH's trust on first use, the rule of our paramiko pins: an unknown key is recorded in the cluster's file,
# a changed one refused (OpenSSH >= 7.6).
HOST_KEY_CHECKING = "StrictHostKeyChecking=accept-new"


def ssh_args(inv: Inventory, host: Host, known_hosts: Path) -> str:
    """``ansible_ssh_common_args`` for ``host``: the pinned known-hosts file, and the jump host if any."""
    args = [
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        HOST_KEY_CHECKING,
        "-o",
        "IdentitiesOnly=yes" if host.key_file else "PubkeyAuthentication=yes",
    ]
    if host.jump:
        jump = inv.host(host.jump)
        proxy = ["ssh", "-W", "%h:%p", "-p", str(jump.port)]
        if jump.key_file:
            proxy += ["-i", str(jump.key_file), "-o", "IdentitiesOnly=yes"]
        proxy += [
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            HOST_KEY_CHECKING,
            "-o",
            "BatchMode=yes",
            f"{jump.user}@{jump.address}",
        ]
        args += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    if host.ssh_common_args:
        # After ours: OpenSSH keeps the first value of an option, and the user's cannot set ours (checked on load).
        args += shlex.split(host.ssh_common_args)
    return shlex.join(args)


def to_document(inv: Inventory, known_hosts: Path) -> dict[str, Any]:
    """The inventory as Ansible's YAML inventory structure (no secrets)."""
    groups: dict[str, dict[str, Any]] = {group: {"hosts": {}} for group in GROUPS}
    for host in inv.hosts:
        entry: dict[str, Any] = dict(host.extra)
        entry.update(
            {
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_user": host.user,
                "ansible_ssh_common_args": ssh_args(inv, host, known_hosts),
            }
        )
        if host.key_file:
            entry["ansible_ssh_private_key_file"] = str(host.key_file)
        if host.python:
            entry["ansible_python_interpreter"] = host.python
        if host.vm_id is not None:
            entry["provision_vm_id"] = host.vm_id
        if host.jump:
            entry["provision_jump"] = host.jump
        if host.become is not None:
            entry["ansible_become"] = host.become
        if host.become_user:
            entry["ansible_become_user"] = host.become_user
        groups[host.group]["hosts"][host.name] = entry
    return {"all": {"vars": {"provision_cluster_name": inv.cluster}, "children": groups}}


def write(inv: Inventory, path: Path, known_hosts: Path) -> Path:
    """Write ``hosts.yml`` (and 0600 ``host_vars/<host>.yml`` for hosts with a login or become password).

    ``known_hosts`` is made ready for OpenSSH, which records a first-contact key there but creates neither a
    missing directory nor a 0600 file: its directory is created 0700, and the file (when missing) empty and 0600,
    so that keys OpenSSH appends are as private as the ones :mod:`provisioner.ansible.ssh` records.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _prepare_known_hosts(Path(known_hosts))
    text = "# Written by provision; regenerate with: provision cluster inventory " + inv.cluster + "\n"
    text += yaml.safe_dump(to_document(inv, known_hosts), sort_keys=False, default_flow_style=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    host_vars = path.parent / "host_vars"
    for host in inv.hosts:
        target = host_vars / f"{host.name}.yml"
        secret = {
            key: value
            for key, value in (("ansible_password", host.password), ("ansible_become_password", host.become_password))
            if value
        }
        if secret:
            host_vars.mkdir(exist_ok=True, mode=0o700)
            write_secret_file(target, yaml.safe_dump(secret))
        else:
            target.unlink(missing_ok=True)
    return path


def _prepare_known_hosts(known_hosts: Path) -> None:
    ensure_private_dir(known_hosts.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(known_hosts, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# --- reading a user-written inventory (edge) --------------------------------------------------------------------------


def load_user_inventory(path: Path, cluster: str) -> Inventory:
    """Read an Ansible YAML inventory with groups ``front`` (one host) and ``wn``; refuse anything unclear.

    Accepted shapes: ``all: {children: {front: {hosts: ...}, wn: {hosts: ...}}}`` or ``front:``/``wn:`` at the top.
    Group ``vars`` apply to the group's hosts. Errors name the inventory field and exit 2.
    """
    from provisioner.yamlfile import read_yaml_mapping

    data = read_yaml_mapping(
        Path(path), label=f"inventory {path}", field="--inventory", expected="a YAML inventory (a mapping)"
    )
    root: Mapping[str, Any] = data
    all_vars: Mapping[str, Any] = {}
    if "all" in data:
        top = data["all"]
        if not isinstance(top, Mapping):
            raise InputError("must be a mapping", field="--inventory: all")
        all_vars = _mapping(top.get("vars") or {}, "all.vars")
        root = _mapping(top.get("children") or {}, "all.children")
    unknown = sorted(set(root) - set(GROUPS))
    if unknown:
        raise InputError(
            f"unknown group {unknown[0]!r} (the groups are front: the K3s server, and wn: the agents)",
            field="--inventory",
        )
    hosts: list[Host] = []
    for group in GROUPS:
        spec = _mapping(root.get(group) or {}, group)
        group_vars = {**all_vars, **_mapping(spec.get("vars") or {}, f"{group}.vars")}
        for name, host_vars in _mapping(spec.get("hosts") or {}, f"{group}.hosts").items():
            where = f"{group}.hosts.{name}"
            if not isinstance(name, str) or not _HOSTNAME_RE.fullmatch(name):
                raise InputError(
                    "a host name must be 1-63 letters, digits, '_', '.' or '-'", field=f"--inventory: {where}"
                )
            merged = {**group_vars, **_mapping(host_vars or {}, where)}
            hosts.append(_host_from_vars(name, group, merged, where, Path(path).parent))
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"host {dupes[0]!r} is in both groups", field="--inventory")
    fronts = [h for h in hosts if h.group == FRONT_GROUP]
    if len(fronts) != 1:
        raise InputError(
            f"group front must have exactly one host (the K3s server), found {len(fronts)}",
            field="--inventory: front",
        )
    by_name = {h.name: h for h in hosts}
    for host in hosts:
        if host.jump is None:
            continue
        where = f"--inventory: {host.group}.hosts.{host.name}.provision_jump"
        jump = by_name.get(host.jump)
        if jump is None or jump is host:
            raise InputError(f"provision_jump {host.jump!r} is not another host of this inventory", field=where)
        if jump.jump is not None:
            # ssh_args and ssh.session build one hop: a jump host must itself be reached directly.
            raise InputError(
                f"{host.jump!r} must name a host reached directly: chains of jump hosts are not supported "
                f"({host.jump!r} has provision_jump {jump.jump!r})",
                field=where,
            )
    return Inventory(cluster, tuple(hosts))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError("must be a mapping", field=f"--inventory: {where}")
    return value


def _host_from_vars(name: str, group: str, hv: Mapping[str, Any], where: str, base: Path) -> Host:
    def fail(key: str, rule: str) -> InputError:
        return InputError(rule, field=f"--inventory: {where}.{key}")

    for alias, replacement in _ALIASES.items():
        if alias in hv:
            raise fail(alias, f"write it as {replacement} (provision reads only that name)")
    address = str(hv.get("ansible_host", name))
    if not _ADDRESS_RE.fullmatch(address):
        raise fail("ansible_host", "must be a host name or an IP address")
    port = hv.get("ansible_port", 22)
    if isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdigit():
        raise fail("ansible_port", "must be a port number (1-65535)")
    if not 1 <= int(port) <= 65535:
        raise fail("ansible_port", "must be a port number (1-65535)")
    user = str(hv.get("ansible_user", DEFAULT_USER))
    if not _USER_RE.fullmatch(user):
        raise fail("ansible_user", "must be a user name (lowercase letters, digits, '_', '.', '-')")
    key_file: Path | None = None
    if hv.get("ansible_ssh_private_key_file"):
        key_file = Path(str(hv["ansible_ssh_private_key_file"])).expanduser()
        if not key_file.is_absolute():
            key_file = (base / key_file).resolve()
        if not key_file.is_file():
            raise fail("ansible_ssh_private_key_file", f"no such file: {key_file}")
        if key_file.stat().st_mode & 0o077:
            raise fail("ansible_ssh_private_key_file", f"{key_file} is readable by others; chmod 600 it")
    password = hv.get("ansible_password")
    become_password = hv.get("ansible_become_password")
    jump = hv.get("provision_jump")
    become: bool | None = None
    if hv.get("ansible_become") is not None:
        become = _boolean(hv["ansible_become"])
        if become is None:
            raise fail("ansible_become", "must be true or false")
    become_user = hv.get("ansible_become_user")
    if become_user is not None and not _USER_RE.fullmatch(str(become_user)):
        raise fail("ansible_become_user", "must be a user name (lowercase letters, digits, '_', '.', '-')")
    for key in ("ansible_ssh_common_args", *_USER_SSH_ARGS):
        if key in hv:
            _check_ssh_args(hv[key], f"--inventory: {where}.{key}")
    common = hv.get("ansible_ssh_common_args")
    extra = {k: v for k, v in hv.items() if k not in _KNOWN_VARS}
    extra.update({k: str(hv[k]) for k in _USER_SSH_ARGS if hv.get(k)})
    python = hv.get("ansible_python_interpreter")
    return Host(
        name=name,
        group=group,
        address=address,
        port=int(port),
        user=user,
        key_file=key_file,
        password=str(password) if password else None,
        jump=str(jump) if jump else None,
        python=str(python) if python else None,
        extra=extra,
        become=become,
        become_user=str(become_user) if become_user else None,
        become_password=str(become_password) if become_password else None,
        ssh_common_args=str(common) if common else None,
    )


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    return None


def _check_ssh_args(value: Any, where: str) -> None:
    """A user's own SSH arguments: a string of ssh options that leaves host-key checking and the jump to us."""
    if not isinstance(value, str):
        raise InputError("must be a string of ssh options", field=where)
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"cannot be split into ssh arguments ({exc})", field=where) from None
    options: list[str] = []
    for index, word in enumerate(words):
        if word in ("-J", "-F") or (word[:2] in ("-J", "-F") and len(word) > 2):
            raise InputError(
                f"uses {word[:2]}, which provision does not allow here (it pins host keys and builds the jump "
                "itself: use provision_jump for a jump host)",
                field=where,
            )
        if word == "-o" and index + 1 < len(words):
            options.append(words[index + 1])
        elif word.startswith("-o") and len(word) > 2:
            options.append(word[2:])
    for option in options:
        key = re.split(r"[\s=]", option.strip(), maxsplit=1)[0].lower()
        if key in _CONTROLLED_SSH_OPTIONS:
            raise InputError(
                f"sets {_CONTROLLED_SSH_OPTIONS[key]}, which provision controls (host keys are pinned per cluster "
                "and checked strictly; use provision_jump for a jump host): drop it",
                field=where,
            )


def with_pinned(inv: Inventory, **changes: Any) -> Inventory:
    """A copy of ``inv`` with ``changes`` applied to every host (e.g. python=...)."""
    return Inventory(inv.cluster, tuple(replace(h, **changes) for h in inv.hosts))
