"""YAML loading that remembers where every value came from, for `file:line:col` messages.

    doc = load_yaml(path)              # or parse_yaml(text, filename)
    doc.data                           # plain Python (dict / list / str / int / ...)
    doc.where(("segments", "wales"))   # (line, col) of that key's value, 1-based
    doc.problem(path, "message", hint="...")  # a Problem pointing there

Every file a person writes (article front matter, manifests, segments.yaml) is read here, so this
is where a broken or hostile file is stopped, with its position and a hint, before anything else
sees it:
- nesting deeper than MAX_DEPTH levels (PyYAML's composer recurses once per level);
- aliases (`*name`) that together repeat more than MAX_ALIAS_VALUES values (an "alias bomb" of a
  few hundred bytes would otherwise expand to billions), or that refer to the collection they are in;
- keys that are not plain text (`? {k: v}`), merge keys (`<<`), tags other than YAML's standard
  scalar ones (`!custom`), values YAML cannot build (`2026-02-30`), lone UTF-16 surrogates
  (`"\\ud800"`), characters YAML forbids (a NUL byte), and texts over MAX_CHARS characters.
Keys are the text as written: `5: x` has the key "5" and `no: x` the key "no".
Duplicate mapping keys are reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from newsletter.errors import Problem, ProblemsError

PathKey = tuple[str | int, ...]

MAX_DEPTH = 50
MAX_ALIAS_VALUES = 1_000
MAX_CHARS = 1_000_000

_STANDARD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STANDARD + name for name in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {_STANDARD + "map", _STANDARD + "seq"}
_MERGE_TAG = _STANDARD + "merge"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SYNTAX_HINT = "check indentation and quote values that contain ':' or '#'"


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


class _Refused(yaml.MarkedYAMLError):
    """A limit of this loader, raised while composing (so at the offending event)."""

    def __init__(self, problem: str, mark: yaml.Mark, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing nodes only, with a nesting limit and an alias budget.

    The budget is checked when an alias is met, from the size of what it stands for (sizes are
    memoised per node, so a bomb is measured in linear time and refused before it is expanded)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._open_anchors: list[str | None] = []
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values when expanded, height)
        self._repeated = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # The scanner looks ahead to the end of every open `[` / `{` (each may be a key), at a cost
        # that grows with the square of their number: stop it long before that matters.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.get_mark(),
                           "flatten the structure; no file here needs that many levels")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Node | None, index: object) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._check_alias(event)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark,
                           "flatten the structure; no file here needs that many levels")
        anchor = event.anchor if isinstance(event, CollectionStartEvent) else None
        self._depth += 1
        self._open_anchors.append(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.pop()

    def _check_alias(self, event: AliasEvent) -> None:
        name = event.anchor
        if name in self._open_anchors:
            raise _Refused(f"alias *{name} refers to the collection it is inside (a loop)", event.start_mark,
                           f"an alias can only repeat a value that is complete; remove *{name} here")
        if name not in self.anchors:
            return  # PyYAML reports the undefined alias
        values, height = self._measure(self.anchors[name])
        self._repeated += values
        if self._repeated > MAX_ALIAS_VALUES:
            raise _Refused(f"aliases repeat more than {MAX_ALIAS_VALUES:,} values in this file", event.start_mark,
                           "write the values out, or use fewer aliases (the limit stops files that expand "
                           "to millions of values)")
        if self._depth + height > MAX_DEPTH:
            raise _Refused(f"alias *{name} makes the file nested more than {MAX_DEPTH} levels deep",
                           event.start_mark, "flatten the structure; no file here needs that many levels")

    def _measure(self, node: Node) -> tuple[int, int]:
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        count, height = 1, 0
        for child in children:
            child_count, child_height = self._measure(child)
            count += child_count
            height = max(height, child_height)
        self._sizes[id(node)] = (count, height + 1)
        return count, height + 1


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_STANDARD) if tag.startswith(_STANDARD) else tag


class _Builder:
    """Turns composed nodes into plain data, recording positions and collecting every problem."""

    def __init__(self, doc: YamlDocument, line_offset: int) -> None:
        self.doc = doc
        self.offset = line_offset
        self.constructor = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []

    def at(self, node: Node) -> tuple[int, int]:
        return node.start_mark.line + 1 + self.offset, node.start_mark.column + 1

    def refuse(self, node: Node, message: str, hint: str) -> None:
        line, col = self.at(node)
        self.problems.append(Problem(self.doc.filename, line, col, message, hint))

    def value(self, node: Node, path: PathKey) -> Any:
        self.doc.locations[path] = self.at(node)
        if not isinstance(node, ScalarNode) and node.tag not in _COLLECTION_TAGS:
            self.refuse(node, f"the tag {_tag_name(node.tag)} is not supported here",
                        "remove the tag; write a plain mapping or list")
            return None
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                line, col = self.at(key_node)
                self.doc.duplicate_keys.append(Problem(
                    self.doc.filename, line, col, f"duplicate key {key!r}",
                    "each key may appear once; merge the two entries"))
            self.doc.key_locations[child] = self.at(key_node)
            result[key] = self.value(value_node, child)
        return result

    def key(self, node: Node) -> str | None:
        if node.tag == _MERGE_TAG:
            self.refuse(node, "merge keys (<<) are not supported", "write the fields out in each place")
            return None
        if not isinstance(node, ScalarNode):
            kind = "a mapping" if isinstance(node, MappingNode) else "a list"
            self.refuse(node, f"a key must be plain text, not {kind}", "write the key as text, e.g. title: ...")
            return None
        return self.text(node.value, node)

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.refuse(node, f"the tag {_tag_name(node.tag)} is not supported here",
                        "remove the tag; quote the value to keep it as text")
            return None
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc)
            kind = "a date" if node.tag == _STANDARD + "timestamp" else _tag_name(node.tag)
            self.refuse(node, f"cannot read {node.value!r} as {kind}: {reason}",
                        "fix the value, or quote it to keep it as text")
            return None
        return self.text(value, node) if isinstance(value, str) else value

    def text(self, value: str, node: Node) -> str | None:
        if not _SURROGATE.search(value):
            return value
        try:  # a pair written as two escapes ("\ud83d\ude00", as JSON does) is one character
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            code = f"\\u{ord(_SURROGATE.search(value).group()):04x}"  # type: ignore[union-attr]
            self.refuse(node, f"the text contains a lone surrogate ({code}), which is not a character",
                        "write the character itself, or its \\U escape (e.g. \\U0001F600)")
            return None


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _compose(text: str, filename: str, line_offset: int) -> Node | None:
    def refused(line: int, col: int, message: str, hint: str) -> ProblemsError:
        return ProblemsError([Problem(filename, line + line_offset, col, message, hint)])

    try:
        loader = _Loader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except _Refused as exc:
        mark = exc.problem_mark
        raise refused(mark.line + 1, mark.column + 1, str(exc.problem), exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise refused(line, col, f"invalid YAML: {exc.problem or exc}", _SYNTAX_HINT) from None
    except yaml.reader.ReaderError as exc:
        line, col = _position(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise refused(line, col, f"the character U+{ord(char):04X} is not allowed in YAML",
                      "remove it (control characters such as NUL cannot appear in a YAML file)") from None
    except yaml.YAMLError as exc:
        raise refused(1, 1, f"invalid YAML: {exc}", _SYNTAX_HINT) from None
    except RecursionError:  # the limits above should make this unreachable; never a traceback
        raise refused(1, 1, "nested too deeply to read", "flatten the structure") from None


def parse_yaml(text: str, filename: str, *, line_offset: int = 0) -> YamlDocument:
    """Parse YAML text. Problems with the text itself (syntax, the limits above) raise
    ProblemsError listing them with positions. `line_offset` shifts reported lines (for front
    matter that starts below line 1).

    A text that parsed cleanly is remembered (by its exact text, name and offset; texts up to
    CACHE_MAX_CHARS), so reading the same files again, as every build of an edition does, costs
    a copy instead of a parse. Each caller gets its own copy."""
    key = (text, filename, line_offset)
    known = _parsed.get(key)
    if known is None:
        known = _parse_yaml(text, filename, line_offset)
        if len(text) <= CACHE_MAX_CHARS:
            if len(_parsed) >= CACHE_ENTRIES:
                _parsed.clear()
            _parsed[key] = known
    return copy.deepcopy(known)


CACHE_ENTRIES = 256
CACHE_MAX_CHARS = 64_000
_parsed: dict[tuple[str, str, int], YamlDocument] = {}


def _parse_yaml(text: str, filename: str, line_offset: int) -> YamlDocument:
    if len(text) > MAX_CHARS:
        raise ProblemsError([Problem(filename, 1 + line_offset, 1,
                                     f"too long for a YAML file ({len(text):,} characters; at most {MAX_CHARS:,})",
                                     "split the file, or check that it is the file you meant")])
    node = _compose(text, filename, line_offset)
    doc = YamlDocument(filename, None)
    if node is None:
        return doc
    builder = _Builder(doc, line_offset)
    doc.data = builder.value(node, ())
    if builder.problems:
        raise ProblemsError(builder.problems)
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
