"""YAML loading that remembers where every value came from, for `file:line:col` messages.

    doc = load_yaml(path)              # or parse_yaml(text, filename)
    doc.data                           # plain Python (dict / list / str / int / ...)
    doc.where(("segments", "wales"))   # (line, col) of that key's value, 1-based
    doc.problem(path, "message", hint="...")  # a Problem pointing there

Duplicate mapping keys are reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import Problem, ProblemsError

PathKey = tuple[str | int, ...]


@dataclass
class YamlDocument:
    filename: str
    data: Any
    locations: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_locations: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    duplicate_keys: list[Problem] = field(default_factory=list)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Location of the value at `path` (or of its key with key=True); falls back to the
        nearest ancestor that has one, then to 1:1."""
        table = self.key_locations if key else self.locations
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.locations:
                return self.locations[probe]
            probe = probe[:-1]
        return self.locations.get((), (1, 1))

    def problem(
        self, path: PathKey, message: str, *, hint: str | None = None, key: bool = False,
        severity: str = "error",
    ) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.filename, line, col, message, hint, severity)


def _convert(
    node: yaml.Node, path: PathKey, doc: YamlDocument, constructor: yaml.constructor.SafeConstructor
) -> Any:
    doc.locations[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, constructor)
            if isinstance(key, list):
                key = tuple(key)
            child = (*path, key)
            if key in result:
                doc.duplicate_keys.append(
                    Problem(
                        doc.filename, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                        f"duplicate key {key!r}", "each key may appear once; merge the two entries",
                    )
                )
            doc.key_locations[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _convert(value_node, child, doc, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc, constructor) for i, item in enumerate(node.value)]
    return _scalar(node, constructor)


def _scalar(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    return constructor.construct_object(node, deep=True)


def parse_yaml(text: str, filename: str, *, line_offset: int = 0) -> YamlDocument:
    """Parse YAML text. Syntax errors raise ProblemsError with the position.
    `line_offset` shifts reported lines (for front matter that starts below line 1)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = (mark.line + 1 if mark else 1) + line_offset
        col = mark.column + 1 if mark else 1
        raise ProblemsError(
            [Problem(filename, line, col, f"invalid YAML: {exc.problem or exc}",
                     "check indentation and quote values that contain ':' or '#'")]
        ) from None
    doc = YamlDocument(filename, None)
    if node is not None:
        doc.data = _convert(node, (), doc, yaml.constructor.SafeConstructor())
    if line_offset:
        doc.locations = {k: (ln + line_offset, c) for k, (ln, c) in doc.locations.items()}
        doc.key_locations = {k: (ln + line_offset, c) for k, (ln, c) in doc.key_locations.items()}
        doc.duplicate_keys = [
            Problem(p.file, p.line + line_offset, p.col, p.message, p.hint) for p in doc.duplicate_keys
        ]
    return doc


def load_yaml(path: Path, *, display_name: str | None = None) -> YamlDocument:
    name = display_name or str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ProblemsError([Problem(name, 1, 1, "file not found")]) from None
    except IsADirectoryError:
        raise ProblemsError([Problem(name, 1, 1, "is a directory, not a YAML file",
                                     "name the file, e.g. issues/2026-12.yaml")]) from None
    except OSError as exc:
        raise ProblemsError([Problem(name, 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ProblemsError(
            [Problem(name, 1, 1, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")]
        ) from None
    return parse_yaml(text, name)
