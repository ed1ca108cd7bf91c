"""Load YAML documents while remembering where every value came from.

Errors in task files are reported as `file:line:col: message`, so each loaded document
keeps a `Locator` mapping a path of keys/indices (`("resources", "accelerators")`) to the
position of that value (and, for mapping keys, of the key itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from skyhop.errors import SpecError

try:  # the C loader is several times faster; fall back to pure Python where it is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]

# Bounds on what one document may make: a task file is small, and an alias bomb ("billion
# laughs": aliases of aliases) would otherwise expand without limit as it is built.
MAX_FILE_BYTES = 16 << 20
MAX_VALUES = 1_000_000  # values (scalars, mappings, lists, keys) after aliases are expanded


@dataclass
class Locator:
    """Positions (1-based line, column) of values and keys in one source document."""

    filename: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> str:
        """`file:line:col` of the deepest known prefix of `path`."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            pos = table.get(probe) or self.values.get(probe)
            if pos is not None:
                return f"{self.filename}:{pos[0]}:{pos[1]}"
            probe = probe[:-1]
        pos = self.values.get(())
        return f"{self.filename}:{pos[0]}:{pos[1]}" if pos else self.filename

    def child(self, prefix: Path) -> Locator:
        """A locator for the value at `prefix`, with paths relative to it."""
        n = len(prefix)
        sub = Locator(self.filename)
        sub.values = {p[n:]: v for p, v in self.values.items() if p[:n] == prefix}
        sub.keys = {p[n:]: v for p, v in self.keys.items() if p[:n] == prefix}
        return sub


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, locator: Locator):
        self.locator = locator
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.locator.values[path] = _pos(node)
        if isinstance(node, yaml.MappingNode):
            self.scalars.flatten_mapping(node)  # YAML merge keys (<<)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "<key>"))
                if isinstance(key, (dict, list)):
                    raise SpecError("a mapping key must be a plain value",
                                    where=self.locator.where((*path, "<key>")))
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", hint="keep one of them",
                                    where=f"{self.locator.filename}:{_pos(key_node)[0]}:"
                                          f"{_pos(key_node)[1]}")
                self.locator.keys[(*path, key)] = _pos(key_node)
                out[key] = self.build(value_node, (*path, key))
            self.locator.values.pop((*path, "<key>"), None)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)


def _expanded_size(root: yaml.Node, limit: int, filename: str) -> int:
    """How many values building `root` makes, with every alias expanded (counting stops
    past `limit`); a node that contains itself is refused."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            line, col = _pos(node)
            raise SpecError("a YAML alias refers to a value that contains it",
                            where=f"{filename}:{line}:{col}",
                            hint="remove the recursive anchor/alias")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > limit:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > limit:
                    break
        open_nodes.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(root)


def load_documents(text: str, filename: str = "<string>") -> list[tuple[Any, Locator]]:
    """Every document in `text` with its locator. Syntax errors become SpecError."""
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"the file is {len(text)} characters long; at most {MAX_FILE_BYTES}",
                        where=filename, hint="keep data out of the task file (use "
                                             "file_mounts or a bucket)")
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SpecError(f"invalid YAML: {exc.problem or exc.context}", where=where,
                        hint="check the indentation and quoting at that line") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", where=filename) from None
    docs = []
    for node in nodes:
        if node is None:
            continue
        if _expanded_size(node, MAX_VALUES, filename) > MAX_VALUES:
            raise SpecError(f"the document expands to more than {MAX_VALUES:,} values "
                            "(YAML aliases repeating aliases?)",
                            where=f"{filename}:{_pos(node)[0]}:{_pos(node)[1]}",
                            hint="write the values out, or use fewer nested aliases")
        locator = Locator(filename)
        try:
            value = _Builder(locator).build(node, ())
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
            raise SpecError(f"invalid YAML value: {exc.problem}", where=where) from None
        docs.append((value, locator))
    return docs
