"""The input schema of our templates (``tosca/inputs.yaml``) and the rules that enforce it.

tosca-parser 2.15 does not enforce input constraints, so we do, before anything is rendered: every value a user
gives is parsed by the input's declared type and checked against its constraints here. Errors are one line that
names the input and the rule (:class:`provisioner.errors.InputError`, exit code 2); secret values never appear in
them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import reprlib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from provisioner.errors import InputError, ProvisionError
from provisioner.privfs import write_secret_file
from provisioner.settings import data_path

#: The templates, input schema and stub types, shipped in the package (``provisioner/data/tosca/``).
TOSCA_DIR = data_path("tosca")
SCHEMA_FILE = "inputs.yaml"
STUB_TYPES_FILE = "stub_types.yaml"
_NOT_TEMPLATES = {SCHEMA_FILE, STUB_TYPES_FILE}

TYPES = ("integer", "float", "boolean", "string", "version", "size", "list")
TOSCA_TYPES = {
    "integer": "integer",
    "float": "float",
    "boolean": "boolean",
    "string": "string",
    "version": "string",
    "size": "scalar-unit.size",
    "list": "list",  # of strings (entry_schema: string)
}
_SPEC_KEYS = {
    "type", "default", "description", "group", "constraints", "rule", "secret", "generate", "empty_ok", "requires",
}  # fmt: skip
_CONSTRAINT_KEYS = {"valid_values", "in_range", "min_length", "max_length", "pattern"}
_TRUE = {"true"}
_FALSE = {"false"}
_VERSION_RE = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){1,2}")
_SIZE_RE = re.compile(r"\s*([0-9]{1,7})\s*(GiB|Gi|TiB|Ti)?\s*")
_INT_RE = re.compile(r"\s*[-+]?[0-9]{1,18}\s*")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
# IM rewrites string inputs whose default starts like this (tosca/Tosca.py _gen_special_input_values).
_IM_SPECIAL = re.compile(r"random\([0-9]+\)")
MASK = "***"


class SchemaFileError(ProvisionError):
    """A file under tosca/ is malformed: a bug in the project, not the user's input (exit 1)."""


@dataclass(frozen=True)
class Constraints:
    """The rules an input's value must meet, as its schema states them (values, range, length, pattern)."""

    valid_values: tuple[Any, ...] | None = None
    in_range: tuple[Any, Any] | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    def describe(self, kind: str) -> list[str]:
        """Human wording, for ``template show``."""
        out: list[str] = []
        if self.valid_values is not None:
            out.append("one of " + ", ".join(_show(v, kind) for v in self.valid_values))
        if self.in_range is not None:
            low, high = self.in_range
            out.append(f"between {_show(low, kind)} and {_show(high, kind)}")
        if self.min_length is not None:
            out.append(f"at least {self.min_length} characters")
        if self.max_length is not None:
            out.append(f"at most {self.max_length} characters")
        if self.pattern is not None:
            out.append(f"matches {self.pattern}")
        return out

    def as_dict(self, kind: str) -> dict[str, Any]:
        def native(value: Any) -> Any:
            return _show(value, kind) if kind in ("size", "version") else value

        out: dict[str, Any] = {}
        if self.valid_values is not None:
            out["valid_values"] = [native(v) for v in self.valid_values]
        if self.in_range is not None:
            out["in_range"] = [native(v) for v in self.in_range]
        for key in ("min_length", "max_length", "pattern"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class InputSpec:
    """One input: its type, default, constraints and whether it is secret."""

    name: str
    type: str
    description: str
    default: Any = None
    group: str = ""
    constraints: Constraints = field(default_factory=Constraints)
    rule: str | None = None
    secret: bool = False
    generate: bool = False
    empty_ok: bool = False
    requires: tuple[str, ...] = ()

    @property
    def tosca_type(self) -> str:
        return TOSCA_TYPES[self.type]

    def is_set(self, value: Any) -> bool:
        """Whether ``value`` counts as "set" for ``requires`` (true, or a non-empty string, or any number)."""
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value != ""
        if isinstance(value, list | tuple):
            return len(value) > 0
        return True

    def parse(self, value: Any) -> Any:
        """``value`` (text from ``--set``/env, or a native YAML value) as this input's type, constraints checked.

        Strings are parsed as text by the declared type ("3" -> 3); string inputs keep the text exactly.
        """
        typed = self._typed(value)
        self.check(typed)
        return typed

    # --- typing -------------------------------------------------------------------------------------------------

    def _fail(self, rule: str, value: Any = None, *, show_value: bool = True) -> InputError:
        got = f", got {brief(value)}" if show_value and not self.secret else ""
        return InputError(f"{self.name}: {rule}{got}", field=self.name)

    def _typed(self, value: Any) -> Any:
        kind = self.type
        if value is None:
            raise self._fail(f"needs a value (type {kind})", show_value=False)
        if kind == "string":
            if not isinstance(value, str):
                raise self._fail(f"must be a string (quote it in YAML), got a {_yaml_kind(value)}", show_value=False)
            check_text(self.name, value, secret=self.secret)
            return value
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise self._fail("must be true or false", value)
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise self._fail("must be an integer", value)
            if isinstance(value, str):
                if not _INT_RE.fullmatch(value):
                    raise self._fail("must be an integer", value)
                return int(value)
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise self._fail("must be a number", value)
            try:
                number = float(value)
            except ValueError:
                raise self._fail("must be a number", value) from None
            if not math.isfinite(number):
                raise self._fail("must be a finite number", value)
            return number
        if kind == "version":
            if isinstance(value, float | int) and not isinstance(value, bool):
                raise self._fail("must be a version such as 1.32.9 written as a string (quote it in YAML)", value)
            if not isinstance(value, str) or not _VERSION_RE.fullmatch(value.strip()):
                raise self._fail("must be a version such as 1.32.9", value)
            return value.strip()
        if kind == "size":
            return f"{self._gib(value)} GiB"
        if kind == "list":
            return self._list(value)
        raise SchemaFileError(f"input {self.name}: unknown type {kind!r}")  # pragma: no cover - load() checks

    def _list(self, value: Any) -> list[str]:
        """A list of strings: a YAML list, or text with the items separated by commas (``--set a,b``)."""
        if isinstance(value, str):
            items: list[Any] = [part.strip() for part in value.split(",")]
            items = [item for item in items if item]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise self._fail(
                f"must be a list of strings, or comma-separated text, got a {_yaml_kind(value)}", show_value=False
            )
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self._fail(
                    f"item {index + 1} must be a string (quote it in YAML), got a {_yaml_kind(item)}", show_value=False
                )
            check_text(self.name, item, secret=self.secret)
        return list(items)

    def _gib(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            match = _SIZE_RE.fullmatch(value)
            if match:
                amount = int(match.group(1))
                return amount * 1024 if (match.group(2) or "").startswith("T") else amount
        raise self._fail('must be a size in GiB such as 8, "8 GiB" or "1 TiB"', value)

    # --- constraints --------------------------------------------------------------------------------------------

    def check(self, value: Any) -> None:
        """Check an already typed value against the constraints."""
        if self.empty_ok and value == "":
            return
        if self.type == "list":
            self._check_items(value)
            return
        c = self.constraints
        comparable = self._comparable(value)
        if c.valid_values is not None and comparable not in [self._comparable(v) for v in c.valid_values]:
            allowed = ", ".join(_show(v, self.type) for v in c.valid_values)
            raise self._fail(f"must be one of {allowed}", value)
        if c.in_range is not None:
            low, high = c.in_range
            if not self._comparable(low) <= comparable <= self._comparable(high):
                raise self._fail(f"must be between {_show(low, self.type)} and {_show(high, self.type)}", value)
        if isinstance(value, str):
            if c.min_length is not None and len(value) < c.min_length:
                raise self._fail(f"must be at least {c.min_length} characters long (got {len(value)})", value)
            if c.max_length is not None and len(value) > c.max_length:
                raise self._fail(f"must be at most {c.max_length} characters long (got {len(value)})", value)
            if c.pattern is not None and not re.fullmatch(c.pattern, value):
                raise self._fail(f"must be {self.rule}" if self.rule else f"must match {c.pattern}", value)

    def _check_items(self, items: list[str]) -> None:
        """A list's constraints apply to each item (valid_values, lengths, pattern); items are distinct."""
        c = self.constraints
        seen: set[str] = set()
        for number, item in enumerate(items, 1):
            shown = f"{number}" if self.secret else brief(item)
            if c.valid_values is not None and item not in c.valid_values:
                allowed = ", ".join(str(v) for v in c.valid_values)
                raise self._fail(f"item {shown} must be one of {allowed}", show_value=False)
            if c.min_length is not None and len(item) < c.min_length:
                raise self._fail(f"item {shown} must be at least {c.min_length} characters long", show_value=False)
            if c.max_length is not None and len(item) > c.max_length:
                raise self._fail(f"item {shown} must be at most {c.max_length} characters long", show_value=False)
            if c.pattern is not None and not re.fullmatch(c.pattern, item):
                rule = f"must be {self.rule}" if self.rule else f"must match {c.pattern}"
                raise self._fail(f"item {shown} {rule}", show_value=False)
            if item in seen:
                raise self._fail(f"lists {shown} twice", show_value=False)
            seen.add(item)

    def _comparable(self, value: Any) -> Any:
        if self.type == "version":
            return tuple(int(part) for part in str(value).split("."))
        if self.type == "size":
            return self._gib(value)
        return value

    # --- display ------------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What ``template show -o json`` prints for this input (never a secret value)."""
        default: Any
        if self.generate:
            default = "(generated)"
        elif self.secret:
            default = "" if self.default == "" else MASK
        else:
            default = self.default
        out: dict[str, Any] = {
            "type": self.type,
            "default": default,
            "secret": self.secret,
            "description": self.description,
            "constraints": self.constraints.as_dict(self.type),
        }
        if self.rule:
            out["rule"] = self.rule
        if self.requires:
            out["requires"] = list(self.requires)
        if self.group:
            out["group"] = self.group
        return out


@dataclass(frozen=True)
class Addon:
    """Something our playbooks install after IM: recorded in metadata.provisioner_addons when ``when`` holds."""

    name: str
    when: str | None = None


@dataclass(frozen=True)
class TemplateSchema:
    """The inputs a template takes, in order, and what it installs afterwards."""

    name: str
    description: str
    inputs: Mapping[str, InputSpec]
    addons: tuple[Addon, ...] = ()

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.inputs.items() if spec.secret)

    def spec(self, name: str) -> InputSpec:
        try:
            return self.inputs[name]
        except KeyError:
            raise unknown_input(name, self) from None


def unknown_input(name: str, schema: TemplateSchema) -> InputError:
    import difflib

    close = difflib.get_close_matches(name, list(schema.inputs), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    label = label_of(name)
    return InputError(
        f"{label}: unknown input for template {schema.name!r}{hint}",
        field=label,
        hint=f"see the inputs with: provision template show {schema.name}",
    )


# --- text rules ---------------------------------------------------------------------------------------------------


def check_text(name: str, value: str, *, secret: bool = False) -> None:
    """Every string input: no control characters except newline and tab, no lone surrogates, nothing IM rewrites."""
    for index, char in enumerate(value):
        if char in "\n\t":
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in "\ufeff\ufffe\uffff":
            where = "" if secret else f" (U+{ord(char):04X} at position {index})"
            raise InputError(
                f"{name}: must not contain control characters other than newline and tab{where}", field=name
            )
    if _IM_SPECIAL.match(value) or value == "access_token()":
        raise InputError(
            f"{name}: must not start with 'random(N)' or be 'access_token()' (IM replaces such values)", field=name
        )


def label_of(name: str) -> str:
    """``name`` as it can be shown in a one-line message (quoted when it is not a plain word)."""
    return name if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) else brief(name)


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short_repr() -> reprlib.Repr:
    shown = reprlib.Repr()
    shown.maxlevel = 3
    shown.maxlist = shown.maxtuple = shown.maxset = shown.maxdict = 4
    shown.maxstring = shown.maxother = 80
    shown.maxlong = 40
    return shown


_SHORT_REPR = _short_repr()


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (for one-line messages).

    Never the whole value's repr first: a list of lists (an inputs file's aliases) can stand for gigabytes.
    """
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _show(value: Any, kind: str) -> str:
    if kind == "size":
        return f"{value} GiB" if isinstance(value, int) else str(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- loading ------------------------------------------------------------------------------------------------------


def tosca_dir() -> Path:
    return TOSCA_DIR


def read_yaml_file(path: Path) -> Any:
    """A project YAML file under tosca/ (a bug if it is missing or malformed), as fresh data the caller may change.

    Parsed once per process (with libyaml when it is there) for as long as the file is unchanged: one create reads
    the template and the input schema several times."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SchemaFileError(f"cannot read {path}: {exc.strerror}") from None
    return copy.deepcopy(_parsed(str(path), st.st_mtime_ns, st.st_size))


@lru_cache(maxsize=64)
def _parsed(path_text: str, mtime_ns: int, size: int) -> Any:
    path = Path(path_text)
    cached = _read_parse_cache(path, mtime_ns, size)
    if cached is not None:
        return cached[0]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaFileError(f"cannot read {path}: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SchemaFileError(f"{path} is not valid YAML: {exc}") from None
    _write_parse_cache(path, mtime_ns, size, data)
    return data


# Our own templates, parsed, as JSON in ``tosca/__pycache__/NAME.yaml.json``: what a .pyc is to a module. A create
# reads three of them; from the cache that needs no YAML parser (PyYAML's import alone is about 11 ms of a start).
# The entry names the file's mtime and size it was made from; any other file, or one JSON cannot hold exactly
# (keys that are not texts, say), is parsed every time. Nothing is written where the package cannot be written.
_CACHE_DIR = "__pycache__"


def _parse_cache_path(path: Path) -> Path | None:
    return path.parent / _CACHE_DIR / f"{path.name}.json" if path.parent == TOSCA_DIR else None


def _read_parse_cache(path: Path, mtime_ns: int, size: int) -> tuple[Any] | None:
    where = _parse_cache_path(path)
    if where is None:
        return None
    try:
        entry = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("mtime_ns") != mtime_ns or entry.get("size") != size:
        return None
    return (entry.get("data"),)


def _write_parse_cache(path: Path, mtime_ns: int, size: int, data: Any) -> None:
    where = _parse_cache_path(path)
    if where is None:
        return
    try:
        text = json.dumps({"mtime_ns": mtime_ns, "size": size, "data": data})
    except (TypeError, ValueError):
        return  # a value JSON has no form for
    if json.loads(text)["data"] != data:
        return  # a value JSON would change (a number as a key)
    try:
        where.parent.mkdir(exist_ok=True)
        write_secret_file(where, text)  # atomic (a temporary file replaces it), no temporary left on failure
    except OSError:
        return  # a package installed read-only: parsed each time


def list_templates(directory: Path | None = None) -> list[str]:
    """Names of the templates in ``tosca/`` (``oscar``, ``kubernetes``, ...), sorted."""
    base = directory or tosca_dir()
    names = []
    for path in sorted(base.glob("*.yaml")):
        if path.name in _NOT_TEMPLATES:
            continue
        names.append(path.stem)
    return names


def template_path(name: str, directory: Path | None = None) -> Path:
    known = list_templates(directory)
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(
            f"unknown template {brief(name)}{hint}; known templates: {', '.join(known) or 'none'}", field="template"
        )
    return (directory or tosca_dir()) / f"{name}.yaml"


def load_template_doc(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The template file as data (a fresh copy every time: callers may change it)."""
    path = template_path(name, directory)
    doc = read_yaml_file(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("provisioner"), dict):
        raise SchemaFileError(f"{path} is not a provisioner template (no `provisioner:` section)")
    if not isinstance(doc.get("topology_template"), dict):
        raise SchemaFileError(f"{path} has no topology_template")
    return doc


def load_schema(template: str, directory: Path | None = None) -> TemplateSchema:
    """The input schema of ``template``: the inputs it lists under ``provisioner.inputs``, from tosca/inputs.yaml."""
    base = directory or tosca_dir()
    doc = load_template_doc(template, base)
    directives = doc["provisioner"]
    path = base / f"{template}.yaml"
    all_specs = load_input_specs(base / SCHEMA_FILE)
    names = directives.get("inputs")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SchemaFileError(f"{path}: provisioner.inputs must be a list of input names")
    missing = [n for n in names if n not in all_specs]
    if missing:
        raise SchemaFileError(f"{path}: inputs not defined in {SCHEMA_FILE}: {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise SchemaFileError(f"{path}: provisioner.inputs lists an input twice")
    inputs = {n: all_specs[n] for n in names}
    for spec in inputs.values():
        for other in spec.requires:
            if other not in inputs:
                raise SchemaFileError(f"{path}: {spec.name} requires {other}, which the template does not take")
    addons = []
    for item in directives.get("addons") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SchemaFileError(f"{path}: each provisioner.addons entry needs a name")
        when = item.get("when")
        if when is not None and when not in inputs:
            raise SchemaFileError(f"{path}: addon {item['name']} depends on unknown input {when}")
        addons.append(Addon(name=item["name"], when=when))
    description = str(doc.get("description") or "").strip()
    return TemplateSchema(name=template, description=description, inputs=inputs, addons=tuple(addons))


def load_input_specs(path: Path) -> dict[str, InputSpec]:
    return dict(_load_input_specs_cached(path, path.stat().st_mtime_ns if path.exists() else 0))


@lru_cache(maxsize=8)
def _load_input_specs_cached(path: Path, _mtime: int) -> tuple[tuple[str, InputSpec], ...]:
    data = read_yaml_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        raise SchemaFileError(f"{path}: must be a mapping with an `inputs:` mapping")
    specs = []
    for name, raw in data["inputs"].items():
        specs.append((name, _spec_from_yaml(str(name), raw, path)))
    return tuple(specs)


def _spec_from_yaml(name: str, raw: Any, path: Path) -> InputSpec:
    where = f"{path}: input {name}"
    if not _NAME_RE.fullmatch(name):
        raise SchemaFileError(f"{where}: names are lowercase identifiers")
    if not isinstance(raw, dict):
        raise SchemaFileError(f"{where}: must be a mapping")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise SchemaFileError(f"{where}: unknown keys {sorted(unknown)}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise SchemaFileError(f"{where}: type must be one of {', '.join(TYPES)}")
    if not isinstance(raw.get("description"), str) or not raw["description"].strip():
        raise SchemaFileError(f"{where}: needs a description")
    secret = bool(raw.get("secret", False))
    generate = bool(raw.get("generate", False))
    if generate and (not secret or kind != "string" or "default" in raw):
        raise SchemaFileError(f"{where}: generate is for secret strings without a default")
    if not generate and "default" not in raw:
        raise SchemaFileError(f"{where}: needs a default (or generate: true)")
    if secret and raw.get("default") not in (None, ""):
        raise SchemaFileError(f"{where}: a secret gets no default but '' (or generate: true)")
    constraints = _constraints_from_yaml(raw.get("constraints") or {}, where)
    requires = raw.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise SchemaFileError(f"{where}: requires must be a list of input names")
    spec = InputSpec(
        name=name,
        type=kind,
        description=raw["description"].strip(),
        default=None,
        group=str(raw.get("group") or ""),
        constraints=constraints,
        rule=raw.get("rule"),
        secret=secret,
        generate=generate,
        empty_ok=bool(raw.get("empty_ok", False)),
        requires=tuple(requires),
    )
    if "default" in raw:
        try:
            default = spec.parse(raw["default"])
        except InputError as exc:
            raise SchemaFileError(f"{where}: its default breaks its own rules: {exc}") from None
        spec = dataclasses.replace(spec, default=default)
    return spec


def _constraints_from_yaml(raw: Any, where: str) -> Constraints:
    if not isinstance(raw, dict):
        raise SchemaFileError(f"{where}: constraints must be a mapping")
    unknown = set(raw) - _CONSTRAINT_KEYS
    if unknown:
        raise SchemaFileError(f"{where}: unknown constraints {sorted(unknown)}")
    valid_values = raw.get("valid_values")
    in_range = raw.get("in_range")
    if valid_values is not None and not isinstance(valid_values, list):
        raise SchemaFileError(f"{where}: valid_values must be a list")
    if in_range is not None and (not isinstance(in_range, list) or len(in_range) != 2):
        raise SchemaFileError(f"{where}: in_range must be [min, max]")
    for key in ("min_length", "max_length"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 0):
            raise SchemaFileError(f"{where}: {key} must be a non-negative integer")
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise SchemaFileError(f"{where}: bad pattern: {exc}") from None
    return Constraints(
        valid_values=tuple(valid_values) if valid_values is not None else None,
        in_range=(in_range[0], in_range[1]) if in_range is not None else None,
        min_length=raw.get("min_length"),
        max_length=raw.get("max_length"),
        pattern=pattern,
    )


def schema_from_specs(name: str, specs: Sequence[InputSpec], description: str = "") -> TemplateSchema:
    """A schema built in code (tests, tools)."""
    return TemplateSchema(name=name, description=description, inputs={s.name: s for s in specs})
