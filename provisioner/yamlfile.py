"""Reading a user's YAML file (config, inputs, policy...) with one clear line on every failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import InputError


def read_yaml_mapping(
    path: Path, *, label: str, field: str, expected: str = "a YAML mapping", error: type[InputError] = InputError
) -> dict[str, Any]:
    """The mapping in ``path`` ({} for an empty file). ``label`` names the file in messages ("config file x")."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"cannot read {label}: not UTF-8 text", field=field) from None
    except OSError as exc:
        raise error(f"cannot read {label}: {exc.strerror or exc}", field=field) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{label} is not valid YAML{where}", field=field) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{label} must be {expected}", field=field)
    return data
