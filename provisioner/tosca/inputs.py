"""User inputs: ``--set KEY=VALUE`` options, inputs files, and their resolution against a template's schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import InputError
from provisioner.redact import register_secret
from provisioner.tosca.schema import MASK, TemplateSchema, brief, label_of, load_schema, unknown_input
from provisioner.tosca.secrets import SecretStore, generate_secret
from provisioner.yamlfile import read_yaml_mapping

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, repr=False)
class ResolvedInputs:
    """Validated, typed input values of one template, secrets included (generated ones too).

    ``repr`` masks the secrets, so an accidental log line or traceback does not show them.
    """

    template: str
    values: Mapping[str, Any]
    secret_names: frozenset[str]
    given: frozenset[str] = frozenset()
    generated: frozenset[str] = frozenset()

    @property
    def all(self) -> dict[str, Any]:
        """Every value, secrets included, in the schema's order."""
        return dict(self.values)

    @property
    def public(self) -> dict[str, Any]:
        """The non-secret values."""
        return {k: v for k, v in self.values.items() if k not in self.secret_names}

    @property
    def secret_values(self) -> list[str]:
        """The non-empty secret values (for :func:`provisioner.tosca.masked`)."""
        return [str(self.values[k]) for k in sorted(self.secret_names) if self.values.get(k)]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __repr__(self) -> str:
        shown = {k: (MASK if k in self.secret_names and v else v) for k, v in self.values.items()}
        return f"ResolvedInputs(template={self.template!r}, values={shown!r})"


def parse_set_options(pairs: list[str]) -> dict[str, str]:
    """``["wn_num=3", "oscar_password=a=b"]`` -> ``{"wn_num": "3", "oscar_password": "a=b"}``.

    Split at the first ``=``; the value is kept exactly (no stripping); a later ``--set`` of the same key wins.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"expects KEY=VALUE, got {brief(pair)}", field="--set")
        key = key.strip()
        if not _KEY_RE.fullmatch(key):
            raise InputError(f"expects KEY=VALUE with KEY an input name, got key {label_of(key)!r}", field="--set")
        out[key] = value
    return out


def load_inputs_file(path: Path | str) -> dict[str, Any]:
    """An inputs file: a YAML mapping of input name to value. An empty file is ``{}``."""
    path = Path(path)
    data = read_yaml_mapping(path, label=str(path), field="--inputs", expected="a YAML mapping of input name to value")
    for key in data:
        if not isinstance(key, str):
            raise InputError(f"{path}: input names must be strings, got {brief(key)}", field="--inputs")
    return dict(data)


def prepare_inputs(
    template: str | TemplateSchema,
    raw: Mapping[str, Any],
    *,
    secrets_store: SecretStore | None,
) -> ResolvedInputs:
    """Validate and type ``raw`` (names -> text or YAML values) against the template's schema.

    - Unknown names, wrong types and broken constraints raise :class:`InputError` (one line, exit 2).
    - Inputs not given take their default; secrets not given are taken from ``secrets_store`` (an earlier render
      of the same cluster) or, if the schema says ``generate``, generated.
    - Every resolved non-empty secret is written back to ``secrets_store`` (0600), and registered for masking.
    """
    schema = template if isinstance(template, TemplateSchema) else load_schema(template)
    for name in raw:
        if not isinstance(name, str) or name not in schema.inputs:
            raise unknown_input(str(name), schema)

    kept = secrets_store.load() if secrets_store is not None else {}
    values: dict[str, Any] = {}
    generated: set[str] = set()
    to_store: dict[str, str | None] = {}
    for name, spec in schema.inputs.items():
        if name in raw:
            values[name] = spec.parse(raw[name])
            if spec.secret:
                to_store[name] = values[name] or None
        elif spec.secret and name in kept:
            try:
                values[name] = spec.parse(kept[name])
            except InputError as exc:
                where = secrets_store.path if secrets_store is not None else "the secrets file"
                raise InputError(f"{exc.message} (kept in {where})", field=name) from None
        elif spec.generate:
            values[name] = spec.parse(generate_secret())
            generated.add(name)
            to_store[name] = values[name]
        else:
            values[name] = spec.default

    for name, spec in schema.inputs.items():
        if spec.is_set(values[name]):
            for other in spec.requires:
                if not schema.inputs[other].is_set(values[other]):
                    raise InputError(f"{other}: required when {name} is set", field=other)

    for name in schema.secret_names:
        if values.get(name):
            register_secret(str(values[name]))
    if secrets_store is not None and to_store:
        secrets_store.update(to_store)

    return ResolvedInputs(
        template=schema.name,
        values=values,
        secret_names=schema.secret_names,
        given=frozenset(raw),
        generated=frozenset(generated),
    )
