"""Reading a user's YAML file (config, inputs, policy, inventory, TOSCA...) with one clear line on every failure.

Every file a user hands the tool goes through :func:`read_yaml_file`, which refuses, before anything is parsed
into Python values, a file over a size limit, nesting deeper than a limit, and aliases that expand past a limit
(a "billion laughs" anchor bomb is a few hundred bytes that stand for gigabytes once walked).

PyYAML is imported when a text is first parsed or written, not with this module: an empty file (a config with
nothing in it yet) needs no parser, and the import alone takes about 11 ms of a command's start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import InputError

if TYPE_CHECKING:
    import yaml

MAX_FILE_BYTES = 1024 * 1024  # a user's YAML file; ours are a few KiB
MAX_DEPTH = 64  # nested mappings and sequences
MAX_ALIASES = 1000  # *alias uses in one file
MAX_NODES = 200_000  # nodes once every alias is expanded (what a walk over the data would visit)


# A path into a document: the keys and list indexes from its root to a value (``("functions", "oscar", 0)``).
YamlPath = tuple[str | int, ...]


def read_yaml_file(path: Path, *, label: str, field: str, error: type[InputError] = InputError) -> Any:
    """The data in ``path`` (None for an empty file), within the size, depth and alias limits."""
    text = read_text_file(path, label=label, field=field, error=error)
    if not text.strip(" \t\r\n"):
        return None  # what the parser makes of blanks and line breaks, without importing one
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        _check_events(text, yaml.SafeLoader, label=label, field=field, error=error)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, label=label, field=field, error=error)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{label} is not valid YAML{where}", field=field) from None
    finally:
        loader.dispose()


def read_yaml_mapping(
    path: Path, *, label: str, field: str, expected: str = "a YAML mapping", error: type[InputError] = InputError
) -> dict[str, Any]:
    """The mapping in ``path`` ({} for an empty file). ``label`` names the file in messages ("config file x")."""
    data = read_yaml_file(path, label=label, field=field, error=error)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{label} must be {expected}", field=field)
    return data


def read_text_file(path: Path, *, label: str, field: str, error: type[InputError] = InputError) -> str:
    """The UTF-8 text of ``path``, within the size limit (one clear line on failure)."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise error(f"{label} is too large: {size} bytes, the limit is {MAX_FILE_BYTES}", field=field)
            raw = handle.read(MAX_FILE_BYTES + 1)  # a pipe or a file growing meanwhile: no more than the limit
    except OSError as exc:
        raise error(f"cannot read {label}: {exc.strerror or exc}", field=field) from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{label} is too large: over {MAX_FILE_BYTES} bytes", field=field)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"cannot read {label}: not UTF-8 text", field=field) from None


def parse_yaml_located(
    text: str, *, label: str, field: str, error: type[InputError] = InputError
) -> tuple[Any, dict[YamlPath, int]]:
    """The data in ``text`` (None when empty) and the line (1-based) of every value in it, by path: a mapping
    entry's line is its key's, a list item's is the item's. Within the same limits as :func:`read_yaml_file`;
    a key given twice in one mapping is refused (PyYAML would keep the last one without a word). Pure.

    libyaml's parser reads it when PyYAML has it (twenty times faster); a text it refuses is read again by the
    pure-Python one, whose wording the error messages carry."""
    import yaml

    fast: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _parse_located(text, fast, label=label, field=field, error=error)
        except yaml.YAMLError:
            pass  # said again below, in the pure parser's words
    try:
        return _parse_located(text, yaml.SafeLoader, label=label, field=field, error=error)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        where = f"{mark.line + 1}" if mark is not None else "?"
        raise error(f"{label}:{where}: {field}: not valid YAML ({problem})") from None


def dump_text(data: Any, **options: Any) -> str:
    """``yaml.safe_dump(data, **options)``, through libyaml when PyYAML has it (about 20x faster: a TOSCA document
    is dumped on every create). The text is the pure-Python dumper's for our templates and for mappings of plain and
    single-quoted strings; a long string that needs double quotes and escapes may be wrapped at another place. Either
    way it loads back to the same data (tests/unit/test_yamlfile.py checks both over random documents)."""
    import yaml

    dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, **options))


def _parse_located(
    text: str, loader_class: type[yaml.SafeLoader], *, label: str, field: str, error: type[InputError]
) -> tuple[Any, dict[YamlPath, int]]:
    loader = loader_class(text)
    lines: dict[YamlPath, int] = {}
    try:
        _check_events(text, loader_class, label=label, field=field, error=error)
        node = loader.get_single_node()
        if node is None:
            return None, lines
        _check_expansion(node, label=label, field=field, error=error)
        return _located(loader, node, (), lines, label=label, error=error), lines
    finally:
        loader.dispose()


def _located(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: YamlPath,
    lines: dict[YamlPath, int],
    *,
    label: str,
    error: type[InputError],
) -> Any:
    """Construct ``node``'s value, noting each value's line in ``lines`` (nesting is bounded by MAX_DEPTH)."""
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<: *base) become ordinary entries
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise error(f"{label}:{key_node.start_mark.line + 1}: {dotted(path) or '(top)'}: a key must be a text")
            if key in result:
                where = dotted((*path, str(key)))
                raise error(f"{label}:{key_node.start_mark.line + 1}: {where}: given twice in one mapping")
            child = (*path, str(key))
            lines[child] = key_node.start_mark.line + 1
            result[key] = _located(loader, value_node, child, lines, label=label, error=error)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            items.append(_located(loader, item, child, lines, label=label, error=error))
        return items
    return loader.construct_object(node, deep=True)


def dotted(path: YamlPath) -> str:
    """A path as users write it: ``("functions", "oscar", 0, "edge")`` -> ``functions.oscar[0].edge``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _check_events(
    text: str, loader_class: type[yaml.SafeLoader], *, label: str, field: str, error: type[InputError]
) -> None:
    """Depth and alias count from the event stream (no recursion, nothing built yet)."""
    import yaml

    depth = aliases = 0
    for event in yaml.parse(text, Loader=loader_class):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(f"{label} nests deeper than {MAX_DEPTH} levels (line {line})", field=field)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise error(f"{label} uses more than {MAX_ALIASES} aliases (*name)", field=field)


def _check_expansion(root: yaml.Node, *, label: str, field: str, error: type[InputError]) -> None:
    """Refuse a document whose aliases expand past MAX_NODES nodes (counted per distinct node, not walked)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order over the node graph: a node's size is 1 + its children's (aliases share nodes).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise error(
                    f"{label}: its aliases expand to more than {MAX_NODES} values (an alias bomb?)", field=field
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise error(f"{label}: an alias refers to the collection it is in (a recursive alias)", field=field)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def type_name(value: Any) -> str:
    """What a YAML value is, in the words error lines use ("a list", "a text", "empty")."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
