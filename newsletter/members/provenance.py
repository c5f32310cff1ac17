"""Where each member field's value came from, so a re-import never undoes an admin's edit.

`Subscriber.field_sources` maps a field ("region", "last_name", "attributes.committee", ...) to the
actor that last set it: `import:<source>` for a spreadsheet import, anything else (`cli`,
`admin:<user>`, `member`) for a person. An import changes a field a person set only when asked to
(`--overwrite-manual`); otherwise the stored value is kept and the import report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

IMPORT_PREFIX = "import:"
# Fields whose values may be written into the audit log: categories, not personal data (names,
# organisations and attributes are named there, never quoted, so an erasure leaves nothing behind).
SHOWN_IN_AUDIT = ("region", "member_type", "joined_at")

FieldValue = str | datetime | dict[str, str] | None


def is_manual(source: str | None) -> bool:
    """True when a person (not an import) set the field."""
    return bool(source) and not str(source).startswith(IMPORT_PREFIX)


@dataclass(frozen=True)
class FieldChange:
    field: str  # "region", or "attributes.<key>"
    old: str | None
    new: str | None

    def describe(self) -> str:
        return f"{self.field}: {_shown(self.old)} → {_shown(self.new)}"

    def audit_text(self) -> str:
        if self.field in SHOWN_IN_AUDIT:
            return f"{self.field} ({_shown(self.old)} → {_shown(self.new)})"
        return self.field


def audit_reason(changes: list[FieldChange]) -> str:
    """`changed: last_name, region (london → wales)` for the audit log."""
    return "changed: " + ", ".join(sorted(change.audit_text() for change in changes))


def _shown(value: str | None) -> str:
    return "(empty)" if value in (None, "") else str(value)


def _text(value: FieldValue) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return None if value is None else str(value)


def field_changes(changes: Mapping[str, FieldValue], stored: Mapping[str, FieldValue]) -> list[FieldChange]:
    """One FieldChange per field (attributes key by key) for column changes against stored values."""
    out: list[FieldChange] = []
    for column, new in changes.items():
        if column == "attributes":
            before = stored.get("attributes") or {}
            after = new if isinstance(new, dict) else {}
            assert isinstance(before, dict)
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    out.append(FieldChange(f"attributes.{key}", before.get(key), after.get(key)))
            continue
        out.append(FieldChange(column, _text(stored.get(column)), _text(new)))
    return out


def keep_manual_edits(
    changes: dict[str, FieldValue], stored: Mapping[str, FieldValue], sources: Mapping[str, str],
) -> tuple[dict[str, FieldValue], list[FieldChange]]:
    """(the changes an import may make, the changes it must not make because a person set the
    field). Attributes are judged key by key."""
    allowed: dict[str, FieldValue] = {}
    kept: list[FieldChange] = []
    for column, new in changes.items():
        if column == "attributes":
            before = dict(stored.get("attributes") or {})  # type: ignore[arg-type]
            merged = dict(before)
            assert isinstance(new, dict)
            for key, value in new.items():
                if before.get(key) == value:
                    continue
                if is_manual(sources.get(f"attributes.{key}")):
                    kept.append(FieldChange(f"attributes.{key}", before.get(key), value))
                else:
                    merged[key] = value
            if merged != before:
                allowed["attributes"] = merged
            continue
        if is_manual(sources.get(column)):
            kept.append(FieldChange(column, _text(stored.get(column)), _text(new)))
        else:
            allowed[column] = new
    return allowed, kept


def with_sources(sources: Mapping[str, str], changes: list[FieldChange], actor: str) -> dict[str, str]:
    """`sources` after `actor` set the changed fields."""
    return {**sources, **{change.field: actor for change in changes}}
