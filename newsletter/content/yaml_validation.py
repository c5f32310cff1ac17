"""Pydantic models for YAML files, and their errors as Problems at `file:line:col`.

One helper for every file a person writes (article front matter, manifests, segments.yaml):

    checked = validate_yaml(doc, ManifestFile)     # doc from yaml_source.load_yaml
    checked.value        # the model, or None when there were problems
    checked.problems     # each error at the line and column of the value (or key) it is about
    checked.partial(ManifestPlan)   # the same data minus the values with problems, validated by a
                                    # lenient model, so cross-field checks can still run

Models subclass YamlModel and word their own messages through class variables (`what` names the
mapping, e.g. "segment {key!r}"). Validators raise FieldProblem for a message of their own (with a
hint, and the position of a list item below the field); pydantic's own errors are put plainly
("max must be a whole number, not 'two'").
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails

from newsletter.content.yaml_source import PathKey, YamlDocument
from newsletter.errors import Problem

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=BaseModel)

_SHORT = 60


def suggest(word: str, choices: Iterable[str], what: str = "") -> str | None:
    """'did you mean X?' for the closest choice, or None."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not matches:
        return None
    return f"did you mean {matches[0]!r}?" + (f" ({what})" if what else "")


def shown(value: object) -> str:
    """A value read from YAML as a message names it: 5, 'abc', true, 2026-12-03, a mapping, a list."""
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= _SHORT else value[:_SHORT] + "…")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return repr(value)


class FieldProblem(ValueError):
    """Raised by a validator. `message` is said of the field ("must be a list of text, not 5" gives
    "tags must be a list of text, not 5"), or stands alone with complete=True. `at` points below
    the field (e.g. (2,) for its third item); key=True points at the key rather than the value."""

    def __init__(self, message: str, hint: str | None = None, *, at: PathKey = (), key: bool = False,
                 complete: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.at = at
        self.key = key
        self.complete = complete


class YamlModel(BaseModel):
    """A mapping in a YAML file. Subclasses word their messages with these class variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    what: ClassVar[str] = "the file"  # may use {key}: this mapping's key in its parent
    shape: ClassVar[str] = "must be a mapping of field: value"
    shape_hint: ClassVar[str | None] = None
    unknown_message: ClassVar[str] = "unknown field {name!r} in {what}"
    missing_message: ClassVar[str] = "missing required field {name!r} in {what}"
    not_in_yaml: ClassVar[tuple[str, ...]] = ()  # fields the program sets, never the file

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        """Turn a short form (e.g. a list standing for one field) into the mapping; override."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        value = cls.shorthand(value)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise FieldProblem(cls.shape, cls.shape_hint)
        return value


# ---------------------------------------------------------------- locating errors in the document


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and X | None."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not NoneType]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class validating the value at `loc` (pydantic's error location), if any."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if _is_model(current):
            fields = {f.alias or name: f for name, f in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if _is_model(current) else None


def _align(data: Any, loc: Iterable[str | int]) -> PathKey:
    """pydantic's location as a path in the YAML data. Steps a validator added (a list standing for
    a mapping, one value standing for a list) have no place in the data and are skipped."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            if part not in node:
                break
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def _label(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """How a message names the value at `loc`: a model's `what`, else the field's name."""
    inner = _model_at(model, loc)
    if inner is not None and issubclass(inner, YamlModel):
        key = loc[-1] if loc else ""
        return inner.what.format(key=key)
    names = [p for p in loc if isinstance(p, str)]
    return names[-1] if names else "the value"


_EXPECTED = {
    "string_type": "text", "string_unicode": "text",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "datetime_type": "a date and time such as 2026-11-20T09:00:00+00:00",
    "datetime_parsing": "a date and time such as 2026-11-20T09:00:00+00:00",
    "datetime_from_date_parsing": "a date and time such as 2026-11-20T09:00:00+00:00",
    "date_type": "a date such as 2026-11-20", "date_parsing": "a date such as 2026-11-20",
    "date_from_datetime_parsing": "a date such as 2026-11-20",
}


@dataclass(frozen=True)
class _Error:
    path: PathKey       # in the YAML data (for a missing field: the mapping it is missing from)
    key: bool           # the problem is the key at `path`, not its value
    problem: Problem
    missing: bool = False


def _explain(doc: YamlDocument, model: type[BaseModel], data: Any, err: ErrorDetails) -> _Error:
    loc = tuple(err["loc"])
    key = bool(loc) and loc[-1] == "[key]"
    if key:
        loc = loc[:-1]
    kind = err["type"]
    context = err.get("ctx") or {}
    cause = context.get("error")
    hint: str | None = None
    if kind == "missing":
        parent = _model_at(model, loc[:-1])
        template = parent.missing_message if parent and issubclass(parent, YamlModel) else YamlModel.missing_message
        message = template.format(name=loc[-1], what=_label(model, loc[:-1]))
        path = _align(data, loc[:-1])
        return _Error(path, False, doc.problem(path, message), missing=True)
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1]) or model
        hidden = parent.not_in_yaml if issubclass(parent, YamlModel) else ()
        allowed = [f.alias or name for name, f in parent.model_fields.items() if name not in hidden]
        template = parent.unknown_message if issubclass(parent, YamlModel) else YamlModel.unknown_message
        message = template.format(name=loc[-1], what=_label(model, loc[:-1]))
        hint = suggest(str(loc[-1]), allowed) or f"allowed: {', '.join(allowed)}"
        path = _align(data, loc)
        return _Error(path, True, doc.problem(path, message, hint=hint, key=True))
    if isinstance(cause, FieldProblem):
        path = _align(data, loc + cause.at)
        message = cause.message if cause.complete else f"{_label(model, loc)} {cause.message}"
        key = key or cause.key
        return _Error(path, key, doc.problem(path, message, hint=cause.hint, key=key))
    label = _label(model, loc)
    if kind in _EXPECTED:
        message = f"{label} must be {_EXPECTED[kind]}, not {shown(err['input'])}"
        if _EXPECTED[kind] == "text" and isinstance(err["input"], int | float | bool):
            hint = "put it in quotes to keep it as text"
    elif kind == "string_too_short" and context.get("min_length") == 1:
        message = f"{label} must not be empty"
    elif kind == "string_too_long":
        message = f"{label} is too long (at most {context.get('max_length')} characters)"
    else:
        message = f"{label}: {err['msg'].removeprefix('Value error, ')}"
    path = _align(data, loc)
    return _Error(path, key, doc.problem(path, message, hint=hint, key=key))


def _without(data: Any, errors: Iterable[_Error]) -> Any:
    """A copy of `data` without the mapping entries that hold the errors (a bad list item takes
    its whole list; a bad value its key). None when an error is the document itself."""
    copied = copy.deepcopy(data)
    for error in errors:
        node, holder, name = copied, None, None
        for part in error.path:
            if isinstance(node, dict) and part in node:
                holder, name, node = node, part, node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                break
        if holder is None:
            return None
        holder.pop(name, None)
    return copied


@dataclass(frozen=True)
class Validated(Generic[M]):
    doc: YamlDocument
    data: Any
    value: M | None
    errors: tuple[_Error, ...]

    @property
    def problems(self) -> list[Problem]:
        return [e.problem for e in self.errors]

    def has_problem(self, path: PathKey) -> bool:
        """True when a problem was found at `path` or below it."""
        return any(e.path[: len(path)] == path for e in self.errors)

    def partial(self, lenient: type[P]) -> M | P | None:
        """The model of what is valid: the value itself, or the data without every entry that has
        a problem, validated by `lenient` (the same fields, none required). None when nothing is left."""
        if self.value is not None:
            return self.value
        data: Any = self.data
        # a field the strict model requires may be optional in the lenient one
        errors = tuple(e for e in self.errors if not e.missing)
        for _ in range(10):  # each round removes at least one entry
            data = _without(data, errors)
            if data is None:
                return None
            try:
                return lenient.model_validate(data)
            except ValidationError as exc:
                errors = tuple(_explain(self.doc, lenient, data, e) for e in exc.errors())
        return None


def validate_yaml(doc: YamlDocument, model: type[M], data: Any = None) -> Validated[M]:
    """Validate `data` (default: the document's) with `model`; every error becomes a Problem at
    the position of the value it is about."""
    data = doc.data if data is None else data
    try:
        return Validated(doc, data, model.model_validate(data), ())
    except ValidationError as exc:
        return Validated(doc, data, None, tuple(_explain(doc, model, data, e) for e in exc.errors()))
