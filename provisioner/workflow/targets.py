"""Which OSCAR each cluster id of an FDL is, and how to reach it.

A cluster id resolves, in this order, to: a cluster this tool manages (the registry: its recorded ``oscar_url``,
else the ``oscar_endpoint`` output for an IM cluster, else OSCAR's NodePort 30301 on the front node; the password
from the cluster's secrets); an entry of the FDL's ``clusters:``; an entry of oscar-cli's config. The first that
knows the id wins. An OIDC token may be given as ``oidc_token: "command(oidc-token egi)"`` (as in the auth
file): the command runs when the token is first needed and again after a 401.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.ansible import inventory as inv
from provisioner.errors import InputError, ProvisionError
from provisioner.model import ClusterKind
from provisioner.oscar.config import OscarAccess, read_oscar_cli_config
from provisioner.redact import register_secret
from provisioner.secretcmd import command_of
from provisioner.state.interface import StateStore
from provisioner.state.store import ClusterRecord
from provisioner.tosca.secrets import SecretStore
from provisioner.workflow.fdl import Fdl

__all__ = ["OSCAR_NODE_PORT", "Target", "known_cluster_ids", "resolve_targets"]

OSCAR_NODE_PORT = 30301  # the oscar role's NodePort (oscar_node_port)
MINIO_NODE_PORT = 30300  # the minio role's API NodePort


@dataclass(frozen=True)
class Target:
    """One cluster a workflow runs on."""

    cluster: str
    access: OscarAccess
    record: ClusterRecord | None = None  # None: not managed by this tool
    front: str | None = None  # the front node's address (managed clusters)
    # The pseudo-cluster of AWS Lambda stages: the function names it lists, and what each should be (for its
    # credentials and region); None for an OSCAR cluster.
    functions: tuple[str, ...] | None = None
    function_definitions: Mapping[str, Mapping[str, Any]] | None = None

    @property
    def is_aws(self) -> bool:
        return self.functions is not None

    @property
    def managed(self) -> bool:
        return self.record is not None


def known_cluster_ids(store: StateStore | None, oscar_cli_config: Path) -> frozenset[str]:
    """Every cluster id an FDL may name without defining it (offline: the registry, oscar-cli's config)."""
    ids = {rec.name for rec in store.list_clusters()} if store is not None else set()
    return frozenset(ids | set(read_oscar_cli_config(oscar_cli_config)))


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _managed(
    rec: ClusterRecord, home: Path, outputs_of: Callable[[str], Mapping[str, Any]], verify: bool | str
) -> Target:
    password = SecretStore(home, rec.name).get("oscar_password")
    if password:
        register_secret(password)
    front: str | None = None
    url = str(rec.extra.get("oscar_url") or "") or None
    if rec.kind is ClusterKind.EDGE:
        front = inv.load_user_inventory(Path(rec.extra["inventory_source"]), rec.name).front.address
        url = url or f"http://{_host(front)}:{OSCAR_NODE_PORT}/"
    elif url is None:
        try:
            outputs = outputs_of(rec.name)
        except ProvisionError as exc:
            raise type(exc)(f"cluster {rec.name}: cannot read its oscar_endpoint output: {exc}") from exc
        url = str(outputs.get("oscar_endpoint") or "") or None
        front = str(outputs.get("front_public_ip") or "") or None
        if url is None:
            raise InputError(
                f"cluster {rec.name} has no oscar_endpoint output (is OSCAR part of its template?)",
                field=rec.name,
                hint=f"record its OSCAR URL: provision cluster endpoint {rec.name} --oscar URL",
            )
    return Target(
        cluster=rec.name,
        access=OscarAccess(rec.name, url, password=password, verify=verify, source="registry"),
        record=rec,
        front=front,
    )


def resolve_targets(
    ids: Iterable[str],
    *,
    fdl: Fdl,
    records: Mapping[str, ClusterRecord],
    home: Path,
    oscar_cli_config: Path,
    outputs_of: Callable[[str], Mapping[str, Any]],
    verify: bool | str,
) -> dict[str, Target]:
    """A :class:`Target` for every id (reads nothing remote but a managed IM cluster's outputs)."""
    cli_clusters: dict[str, OscarAccess] | None = None
    found: dict[str, Target] = {}
    for ident in dict.fromkeys(ids):
        rec = records.get(ident)
        if rec is not None:
            found[ident] = _managed(rec, home, outputs_of, verify)
            continue
        entry = fdl.clusters.get(ident)
        if entry is not None and entry.get("endpoint"):
            password = entry.get("auth_password")
            token = str(entry.get("oidc_token") or "") or None
            command = command_of(token) if token else None
            found[ident] = Target(
                ident,
                OscarAccess(
                    ident,
                    str(entry["endpoint"]),
                    user=str(entry.get("auth_user") or "oscar"),
                    password=str(password) if password else None,
                    token=None if command else token,
                    token_command=command,
                    verify=verify if entry.get("ssl_verify", True) else False,
                    source="FDL clusters:",
                ),
            )
            continue
        if cli_clusters is None:
            cli_clusters = read_oscar_cli_config(oscar_cli_config)
        access = cli_clusters.get(ident)
        if access is not None:
            found[ident] = Target(ident, access)
            continue
        line = next((s.line for s in fdl.stages if s.cluster == ident), None)
        where = next((s.where for s in fdl.stages if s.cluster == ident), f"clusters.{ident}")
        raise InputError(
            f"{fdl.filename}:{line if line is not None else '?'}: {where}: cluster {ident!r} is not managed by "
            f"provision, not in the file's clusters: and not in oscar-cli's config ({oscar_cli_config})",
            hint="see `provision cluster list`, or add it under clusters: with its endpoint and credentials",
        )
    return found
