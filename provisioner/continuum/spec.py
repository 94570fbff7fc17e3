"""The continuum file: its clusters (IM and edge), the add-ons each needs, and the workflow over them, checked.

:func:`read_continuum` reads a YAML file within :mod:`provisioner.yamlfile`'s limits and checks every field; every
refusal is one line ``FILE:LINE: path.to.field: rule`` and all of them are raised together as
:class:`ContinuumInvalid` (exit 2) before anything is sent. The shape::

    name: demo                              # the continuum's name (a cluster name: lowercase, digits, '-')
    clusters:
      cloud-a:                              # an IM cluster: the id is its name in the registry
        template: oscar
        site: local-sim
        inputs: {wn_num: 2}                 # the template's inputs, as `cluster create --set` takes them
        components: [minio, oscar]          # add-ons to install once configured (none when left out)
        oscar_url: https://oscar.example.org  # optional: where its OSCAR answers (`cluster endpoint --oscar`)
      field-1:
        edge:                               # an edge cluster: K3s on your hosts, no IM
          inventory: edge-hosts.yml         # relative to this file's directory
          components: [oscar]               # K3s only when left out
          preflight: true                   # only the roles' checks: nothing is installed or recorded
          inputs: {}                        # optional, the oscar template's inputs
          oscar_url: http://192.0.2.10:30301  # optional, as above
    workflow:                               # optional
      fdl: workflow.yaml                    # an FDL file (relative to this file's directory), or
      inline: {functions: {oscar: [...]}}   # the FDL itself, its scripts relative to this file's directory
      name: demo                            # optional: the workflow's name (default: the continuum's)

Unknown keys are refused with the closest known name suggested. Inputs are checked against the template's schema,
components against the add-ons, the inventory and the FDL as `edge create` and `workflow validate` check them. An
inline FDL is kept at its own lines: its problems are lines of this file (``workflow.inline.functions...``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner import tosca
from provisioner.addons import COMPONENTS, check_components, with_dependencies
from provisioner.ansible.inventory import load_user_inventory
from provisioner.errors import FdlInvalid, InputError
from provisioner.model import NAME_RULE, ClusterKind, is_cluster_name
from provisioner.redact import register_secret
from provisioner.state import inputs_hash
from provisioner.workflow.engine import check_workflow_name
from provisioner.workflow.files import Workflow, load_workflow
from provisioner.yamlfile import YamlPath, dotted, parse_yaml_located, read_text_file
from provisioner.yamlfile import type_name as _type_name

__all__ = ["ContinuumInvalid", "ContinuumSpec", "Leg", "WorkflowSpec", "read_continuum"]

TOP_KEYS = ("name", "clusters", "workflow")
IM_KEYS = ("template", "site", "inputs", "components", "oscar_url")
EDGE_KEYS = ("inventory", "components", "preflight", "inputs", "oscar_url")
WORKFLOW_KEYS = ("fdl", "inline", "name")
EDGE_TEMPLATE = "oscar"  # the inputs of an edge cluster are the oscar template's (as `edge create --set`)
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_PROBLEM = re.compile(r"^(?P<line>\d+|\?): (?P<field>.*?): (?P<rule>.*)$", re.DOTALL)


class ContinuumInvalid(InputError):
    """A continuum file breaks a rule: every problem found, each one line ``FILE:LINE: path.to.field: rule``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems) or "the continuum file is not valid")
        self.problems = list(problems)


@dataclass(frozen=True)
class Leg:
    """One cluster of the continuum: on IM (``kind`` im: template, site) or on the user's hosts (edge: inventory)."""

    id: str
    kind: ClusterKind
    line: int
    components: tuple[str, ...] = ()  # as written (their dependencies are added when installed)
    inputs: Mapping[str, Any] = field(default_factory=dict, repr=False)  # as given, secrets too: never journaled
    public: Mapping[str, Any] = field(default_factory=dict)  # the resolved non-secret inputs (defaults filled in)
    secrets_given: frozenset[str] = frozenset()  # the secret inputs given (names only)
    oscar_url: str | None = None
    template: str = EDGE_TEMPLATE
    site: str = ""
    inventory: Path | None = None
    preflight: bool = False
    digest: str = ""  # what a step of this leg depends on (inventory text, components, inputs): a rerun compares

    @property
    def fingerprint(self) -> str:
        """What ``cluster create`` records for an IM cluster made from these template, site and inputs."""
        return fingerprint(self.template, self.site, self.public)

    @property
    def recorded(self) -> bool:
        """Whether ``up`` records the cluster in the registry (a preflight-only edge cluster is not)."""
        return not (self.kind is ClusterKind.EDGE and self.preflight)

    def chosen(self, inputs: Mapping[str, Any] | None = None) -> list[str]:
        """The components with their dependencies, as the install runs them."""
        return with_dependencies(list(self.components), self.public if inputs is None else inputs)


@dataclass(frozen=True)
class WorkflowSpec:
    """The continuum's ``workflow:`` section, checked: the FDL (a file, or inline in this one), its stages, and the
    continuum's clusters that must be up before ``up`` applies it."""

    name: str
    line: int
    fdl: Path | None  # the FDL file given by path, or None for an inline one
    inline_text: str | None  # an inline FDL: this file's text with all but the FDL blanked (same lines), scripts
    # made absolute
    stages: tuple[str, ...]  # CLUSTER/SERVICE of every stage, in the FDL's order
    needs: frozenset[str]  # the continuum's clusters the workflow runs on or writes to


@dataclass(frozen=True)
class ContinuumSpec:
    """A continuum file as :func:`read_continuum` checked it: its name, its clusters in the file's order, and its
    workflow (None when it has none)."""

    name: str
    path: Path  # the file, resolved
    legs: tuple[Leg, ...]
    workflow: WorkflowSpec | None

    def leg(self, ident: str) -> Leg:
        return next(leg for leg in self.legs if leg.id == ident)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(leg.id for leg in self.legs)


def fingerprint(template: str, site: str, public: Mapping[str, Any]) -> str:
    """The inputs fingerprint ``cluster create`` records (template, site and the non-secret inputs)."""
    return inputs_hash({"template": template, "site": site, "inputs": dict(public)})


def journal_name(name: str) -> str:
    return f"continuum:{name}"


# --- reading --------------------------------------------------------------------------------------------------------


def read_continuum(
    path: Path, *, sites: Collection[str], known_clusters: Collection[str] = frozenset()
) -> ContinuumSpec:
    """Read and check the continuum file at ``path``; raises :class:`ContinuumInvalid` (exit 2).

    ``sites``: the sites a cluster may name (built in and the config file's); ``known_clusters``: the clusters
    an FDL may name besides the continuum's own (the registry's, oscar-cli's)."""
    label = str(path)
    try:
        text = read_text_file(Path(path), label=label, field="FILE")
    except InputError as exc:
        raise ContinuumInvalid([f"{label}:?: FILE: {exc.message.removeprefix('FILE: ')}"]) from None
    try:
        data, lines = parse_yaml_located(text, label=label, field="(file)")
    except InputError as exc:
        raise ContinuumInvalid([exc.message]) from None
    check = _Check(label, lines, Path(path).resolve().parent)
    spec = check.document(data, text, sites=frozenset(sites), known=frozenset(known_clusters))
    if check.problems or spec is None:
        raise ContinuumInvalid(check.rendered())
    return ContinuumSpec(name=spec[0], path=Path(path).resolve(), legs=tuple(spec[1]), workflow=spec[2])


def _rule_of(exc: InputError, name: str | None) -> str:
    """An error's message without the ``field: `` prefix InputError puts in front."""
    message = exc.message
    for prefix in (f"{exc.field}: " if exc.field else None, f"{name}: " if name else None):
        if prefix and message.startswith(prefix):
            message = message[len(prefix) :]
    return message


@dataclass
class _Problem:
    """One problem found in a continuum file, rendered as ``FILE:LINE: path.to.field: rule`` (or, given
    ``verbatim``, as the FDL reader wrote it about another file)."""

    line: int | None
    field: str
    rule: str
    verbatim: str | None = None  # a line made elsewhere (another file's FDL problems), shown as it is


class _Check:
    """One pass over a continuum document: its problems, with the line of each path."""

    def __init__(self, label: str, lines: dict[YamlPath, int], base: Path) -> None:
        self.label = label
        self.lines = lines
        self.base = base
        self.problems: list[_Problem] = []

    def line(self, path: YamlPath) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def bad(self, path: YamlPath, rule: str) -> None:
        self.problems.append(_Problem(self.line(path), dotted(path) or "(top)", rule))

    def rendered(self) -> list[str]:
        ordered = sorted(self.problems, key=lambda p: (p.verbatim is not None, p.line or 0, p.field))
        return [
            p.verbatim or f"{self.label}:{p.line if p.line is not None else '?'}: {p.field}: {p.rule}" for p in ordered
        ]

    def keys(self, path: YamlPath, value: Mapping[Any, Any], known: tuple[str, ...]) -> None:
        """Refuse keys not in ``known``, suggesting the closest known one."""
        for key in value:
            if str(key) in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            self.bad((*path, str(key)), f"unknown key{hint}")

    def mapping(self, path: YamlPath, value: Any, what: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.bad(path, f"must be {what}, got {_type_name(value)}")
            return None
        return {str(k): v for k, v in value.items()}

    def text(self, path: YamlPath, value: Any, *, required: bool = True) -> str | None:
        if value is None:
            if required:
                self.bad(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(path, f"must be a non-empty text, got {_type_name(value)}")
            return None
        return value

    # -- the document --

    def document(
        self, data: Any, text: str, *, sites: frozenset[str], known: frozenset[str]
    ) -> tuple[str, list[Leg], WorkflowSpec | None] | None:
        top = self.mapping((), {} if data is None else data, "a mapping with name:, clusters: and workflow:")
        if top is None:
            return None
        self.keys((), top, TOP_KEYS)
        name = self.text(("name",), top.get("name"))
        if name is not None and not is_cluster_name(name):
            self.bad(("name",), NAME_RULE)
            name = None
        legs = self.clusters(top.get("clusters"), sites)
        workflow = None
        if "workflow" in top and top["workflow"] is not None:
            workflow = self.workflow(top["workflow"], text, name or "", legs, known)
        if name is None or legs is None:
            return None
        return name, legs, workflow

    def clusters(self, value: Any, sites: frozenset[str]) -> list[Leg] | None:
        path: YamlPath = ("clusters",)
        if value is None:
            self.bad(path, "is required: a mapping of cluster id to {template, site, ...} or {edge: {...}}")
            return None
        entries = self.mapping(path, value, "a mapping of cluster id to its settings")
        if entries is None:
            return None
        if not entries:
            self.bad(path, "names no cluster")
        legs: list[Leg] = []
        for ident, body in entries.items():
            where = (*path, ident)
            if not is_cluster_name(ident):
                self.bad(where, f"a cluster id {NAME_RULE}")
                continue
            entry = self.mapping(where, body, "a mapping ({template, site, ...} or {edge: {...}})")
            if entry is None:
                continue
            leg = self.edge(ident, where, entry) if "edge" in entry else self.im(ident, where, entry, sites)
            if leg is not None:
                legs.append(leg)
        return legs

    def im(self, ident: str, path: YamlPath, entry: dict[str, Any], sites: frozenset[str]) -> Leg | None:
        self.keys(path, entry, IM_KEYS)
        before = len(self.problems)
        template = self.text((*path, "template"), entry.get("template"))
        templates = tosca.list_templates()
        if template is not None and template not in templates:
            close = difflib.get_close_matches(template, templates, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.bad((*path, "template"), f"unknown template {template!r}{hint} (known: {', '.join(templates)})")
            template = None
        site = self.text((*path, "site"), entry.get("site"))
        if site is not None and site not in sites:
            close = difflib.get_close_matches(site, sorted(sites), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.bad((*path, "site"), f"unknown site {site!r}{hint} (known: {', '.join(sorted(sites))})")
        resolved = self.inputs((*path, "inputs"), entry.get("inputs"), template) if template else None
        components = self.components((*path, "components"), entry.get("components"), resolved)
        url = self.url((*path, "oscar_url"), entry.get("oscar_url"))
        if len(self.problems) > before or template is None or site is None or resolved is None:
            return None
        return Leg(
            id=ident,
            kind=ClusterKind.IM,
            line=self.line(path),
            components=components,
            inputs=dict(entry.get("inputs") or {}),
            public=resolved.public,
            secrets_given=frozenset(resolved.given & resolved.secret_names),
            oscar_url=url,
            template=template,
            site=site,
            digest=_digest(
                {
                    "kind": "im",
                    "template": template,
                    "site": site,
                    "inputs": resolved.public,
                    "secrets": sorted(resolved.given & resolved.secret_names),
                    "components": list(components),
                }
            ),
        )

    def edge(self, ident: str, path: YamlPath, entry: dict[str, Any]) -> Leg | None:
        others = [key for key in entry if key != "edge"]
        for key in others:
            where = "edge:" if key in EDGE_KEYS else "an IM cluster"
            self.bad((*path, key), f"an edge cluster is given as {{edge: {{...}}}} only: {key} belongs in {where}")
        path = (*path, "edge")
        body = self.mapping(path, entry["edge"], "a mapping with inventory: (and components:, preflight:, ...)")
        if body is None:
            return None
        self.keys(path, body, EDGE_KEYS)
        before = len(self.problems) - len(others)
        written = self.text((*path, "inventory"), body.get("inventory"))
        inventory: Path | None = None
        inventory_text = b""
        if written is not None:
            inventory = (self.base / Path(written).expanduser()).resolve()
            try:
                load_user_inventory(inventory, ident)
                inventory_text = inventory.read_bytes()
            except InputError as exc:
                self.bad((*path, "inventory"), exc.message.removeprefix("--inventory: "))
            except OSError as exc:
                self.bad((*path, "inventory"), f"cannot read {inventory}: {exc.strerror or exc}")
        preflight = body.get("preflight", False)
        if not isinstance(preflight, bool):
            self.bad((*path, "preflight"), f"must be true or false, got {_type_name(preflight)}")
        resolved = self.inputs((*path, "inputs"), body.get("inputs"), EDGE_TEMPLATE)
        components = self.components((*path, "components"), body.get("components"), resolved)
        url = self.url((*path, "oscar_url"), body.get("oscar_url"))
        if url is not None and preflight is True:
            self.bad((*path, "oscar_url"), "a preflight-only edge cluster is not recorded: it has no OSCAR to record")
        if len(self.problems) > before or inventory is None or resolved is None:
            return None
        return Leg(
            id=ident,
            kind=ClusterKind.EDGE,
            line=self.line(path),
            components=components,
            inputs=dict(body.get("inputs") or {}),
            public=resolved.public,
            secrets_given=frozenset(resolved.given & resolved.secret_names),
            oscar_url=url,
            inventory=inventory,
            preflight=bool(preflight),
            digest=_digest(
                {
                    "kind": "edge",
                    "inventory": hashlib.sha256(inventory_text).hexdigest(),
                    "path": str(inventory),
                    "inputs": resolved.public,
                    "secrets": sorted(resolved.given & resolved.secret_names),
                    "components": list(components),
                    "preflight": bool(preflight),
                }
            ),
        )

    def inputs(self, path: YamlPath, value: Any, template: str) -> tosca.ResolvedInputs | None:
        raw = self.mapping(path, {} if value is None else value, "a mapping of input name to value")
        if raw is None:
            return None
        schema = tosca.load_schema(template)
        bad = False
        for name, given in raw.items():
            spec = schema.inputs.get(name)
            if spec is None:
                close = difflib.get_close_matches(name, list(schema.inputs), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.bad((*path, name), f"unknown input of template {template!r}{hint}")
                bad = True
                continue
            try:
                spec.parse(given)
            except InputError as exc:
                self.bad((*path, name), _rule_of(exc, name))
                bad = True
        if bad:
            return None
        try:
            return tosca.prepare_inputs(template, raw, secrets_store=None)
        except InputError as exc:
            where = (*path, exc.field) if exc.field in raw else path
            self.bad(where, _rule_of(exc, exc.field))
            return None

    def components(self, path: YamlPath, value: Any, resolved: tosca.ResolvedInputs | None) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.bad(path, f"must be a list of add-ons ({', '.join(COMPONENTS)}), got {_type_name(value)}")
            return ()
        names: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or item.strip().lower() not in COMPONENTS:
                close = difflib.get_close_matches(str(item), COMPONENTS, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.bad((*path, index), f"unknown component {item!r}{hint} (known: {', '.join(COMPONENTS)})")
                continue
            names.append(item.strip().lower())
        chosen = [c for c in COMPONENTS if c in names]
        if resolved is not None and chosen:
            try:
                check_components(with_dependencies(chosen, resolved.public), resolved.public)
            except InputError as exc:
                self.bad(path, _rule_of(exc, "--components"))
        return tuple(chosen)

    def url(self, path: YamlPath, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _URL.match(value):
            self.bad(path, f"must be an http(s) URL, got {value!r}")
            return None
        return value

    # -- the workflow --

    def workflow(
        self, value: Any, text: str, default_name: str, legs: list[Leg] | None, known: frozenset[str]
    ) -> WorkflowSpec | None:
        path: YamlPath = ("workflow",)
        body = self.mapping(path, value, "a mapping with fdl: PATH or inline: {FDL}")
        if body is None:
            return None
        self.keys(path, body, WORKFLOW_KEYS)
        name = default_name
        if "name" in body:
            given = self.text((*path, "name"), body["name"])
            if given is not None:
                try:
                    name = check_workflow_name(given)
                except InputError as exc:
                    self.bad((*path, "name"), _rule_of(exc, "--name"))
        if ("fdl" in body) == ("inline" in body):
            both = "fdl" in body
            self.bad(
                path,
                "give fdl: PATH or inline: {...}, not both"
                if both
                else "give fdl: PATH (an FDL file) or inline: {...} (the FDL itself)",
            )
            return None
        ids = {leg.id: leg for leg in legs or []}
        known_here = frozenset(known | set(ids))
        before = len(self.problems)
        if "fdl" in body:
            written = self.text((*path, "fdl"), body["fdl"])
            if written is None:
                return None
            fdl_path = (self.base / Path(written).expanduser()).resolve()
            if not fdl_path.is_file():
                self.bad((*path, "fdl"), f"no such file: {written} (looked in {self.base})")
                return None
            loaded = self.load_fdl(fdl_path, known_here, None)
            inline_text = None
            where: YamlPath = (*path, "fdl")
        else:
            where = (*path, "inline")
            if not isinstance(body["inline"], dict) or not body["inline"]:
                self.bad(where, f"must be the FDL, a mapping with functions:, got {_type_name(body['inline'])}")
                return None
            inline_text = self.inline_text(text)
            fdl_path = None
            loaded = self.load_fdl(None, known_here, inline_text) if inline_text is not None else None
        if loaded is None or len(self.problems) > before or not name:
            return None
        return self.workflow_spec(name, where, fdl_path, inline_text, loaded, ids, known)

    def workflow_spec(
        self,
        name: str,
        where: YamlPath,
        fdl_path: Path | None,
        inline_text: str | None,
        loaded: Workflow,
        ids: Mapping[str, Leg],
        known: frozenset[str],
    ) -> WorkflowSpec | None:
        fdl = loaded.fdl
        minio_providers = fdl.storage_providers.get("minio", {})
        needs: set[str] = set()
        for stage in fdl.stages:
            if getattr(stage, "is_lambda", False):
                continue
            line_path = where if inline_text is None else (*where, *stage_path(stage))
            used = {stage.cluster}
            used |= {
                spec.ref
                for spec in (*stage.inputs, *stage.outputs)
                if spec.kind == "minio" and not spec.own and spec.ref not in minio_providers
            }
            for cluster in sorted(used):
                leg = ids.get(cluster)
                if leg is not None and not leg.recorded:
                    self.bad(
                        line_path,
                        f"stage {stage.label} uses cluster {cluster}, a preflight-only edge cluster: "
                        "nothing is recorded for it, so no workflow can use it (drop preflight: true)",
                    )
                elif leg is None and cluster not in fdl.clusters and cluster not in known:
                    self.bad(
                        line_path,
                        f"stage {stage.label} uses cluster {cluster!r}, which is not one of this "
                        f"file's clusters ({', '.join(ids) or 'none'}) nor defined under the FDL's clusters:",
                    )
                elif leg is not None:
                    needs.add(cluster)
        if self.problems:
            return None
        return WorkflowSpec(
            name=name,
            line=self.line(where),
            fdl=fdl_path,
            inline_text=inline_text,
            stages=tuple(stage.label for stage in fdl.stages),
            needs=frozenset(needs),
        )

    def load_fdl(self, fdl_path: Path | None, known: frozenset[str], inline_text: str | None) -> Workflow | None:
        """The FDL checked (a Workflow), or None with its problems noted: an FDL file's as they are (they name it),
        an inline one's as lines of this file."""
        with tempfile.TemporaryDirectory(prefix="continuum-fdl-") as scratch:
            if fdl_path is None:
                assert inline_text is not None
                fdl_path = Path(scratch) / "inline.yaml"
                fdl_path.write_text(inline_text, encoding="utf-8")
                label: str | None = str(fdl_path)
            else:
                label = None
            try:
                loaded = load_workflow(fdl_path, known_clusters=known)
            except FdlInvalid as exc:
                for problem in exc.problems:
                    if label is not None:  # the scratch copy's directory is this file's, for the reader
                        problem = problem.replace(f" {Path(scratch).resolve()})", f" {self.base})")
                    self.problems.append(self.fdl_problem(problem, label))
                return None
            except InputError as exc:
                self.bad(("workflow",), exc.message)
                return None
        for secret in loaded.fdl.secrets():
            register_secret(secret)
        return loaded

    def fdl_problem(self, problem: str, label: str | None) -> _Problem:
        """One of the FDL reader's lines; an inline FDL's re-labelled as this file's ``workflow.inline...``."""
        if label is not None and problem.startswith(f"{label}:"):
            found = _PROBLEM.match(problem[len(label) + 1 :])
            if found is not None:
                field_ = found["field"]
                field_ = "workflow.inline" if field_ in ("(top)", "(file)", "FDL") else f"workflow.inline.{field_}"
                line = int(found["line"]) if found["line"].isdigit() else None
                return _Problem(line, field_, found["rule"])
        return _Problem(None, "workflow", problem, verbatim=problem if label is None else None)

    def inline_text(self, text: str) -> str | None:
        """The inline FDL as a document of its own at the same lines (everything else blanked), each stage's
        script path made absolute (scripts are relative to this file's directory)."""
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        node = _child(_child(root, "workflow"), "inline")
        if node is None:
            return None
        start, end = node.start_mark.index, node.end_mark.index
        out = _blank(text[:start]) + text[start:end] + _blank(text[end:])
        for begin, stop in sorted(_script_nodes(node), reverse=True):
            written = out[begin:stop]
            value = yaml.safe_load(written)
            if not isinstance(value, str) or not value:
                continue
            absolute = str((self.base / Path(value).expanduser()).resolve())
            out = out[:begin] + json.dumps(absolute) + "\n" * written.count("\n") + out[stop:]
        return out


def stage_path(stage: Any) -> YamlPath:
    path = getattr(stage, "path", None)
    if isinstance(path, tuple):
        return path
    return ("functions", "oscar", stage.index, stage.cluster)


def _digest(value: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _blank(text: str) -> str:
    """``text`` with every character but line ends turned into a space (so lines and columns stay where they are)."""
    return re.sub(r"[^\n]", " ", text)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    return None


def _script_nodes(inline: yaml.Node) -> Iterator[tuple[int, int]]:
    """(start, end) of every script path scalar of an FDL's stages: ``functions.oscar[i].CLUSTER.script``
    and ``functions.aws[i].lambda.init_script``."""
    functions = _child(inline, "functions")
    for kind, inner, key in (("oscar", None, "script"), ("aws", "lambda", "init_script")):
        entries = _child(functions, kind)
        if not isinstance(entries, yaml.SequenceNode):
            continue
        for entry in entries.value:
            if not isinstance(entry, yaml.MappingNode):
                continue
            for key_node, body in entry.value:
                if inner is not None and not (isinstance(key_node, yaml.ScalarNode) and key_node.value == inner):
                    continue
                script = _child(body, key)
                if isinstance(script, yaml.ScalarNode):
                    yield script.start_mark.index, script.end_mark.index
