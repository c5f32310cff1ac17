"""The build record (`build.json`): what was built, and everything sending and scheduling need.

One model, one writer (`BuildRecord.to_json`, called by the build) and one parser
(`BuildRecord.from_json`, called by `read_build` in build.py). Build, check, preview, send and
schedule all see a build through this model; nobody reads build.json or the manifest by hand to
learn a variant's subject, sender, files, hashes, send time or window.

On disk the variants are a mapping keyed by segment (stable, easy to read in a diff); in memory
they are a tuple of VariantRecord in manifest order.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from newsletter.errors import NotFound
from newsletter.render.gates import GateReport

FORMAT = 2


class VariantRecord(BaseModel):
    """One built variant: its inbox line, sender, files and their hashes, and when it goes out."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    segment: str
    subject: str
    preheader: str
    from_name: str
    from_email: str
    reply_to: str | None = None
    list_id: str | None = None  # the List-Id header value, e.g. "LPS Digest <digest.example.org>"
    locale: str = "en-GB"  # the language of the template's fixed text (`cy`, `cy en-GB` when bilingual)
    html_file: str = Field(alias="html")
    text_file: str = Field(alias="text")
    eml_file: str = Field(alias="eml")
    sha256: str  # of the .html file
    text_sha256: str  # of the .txt file
    size: int  # bytes of HTML
    articles: tuple[str, ...]
    send_at: datetime | None
    zone: str
    window: str | None = None  # local hours it may go out in, e.g. "07:00-20:00"
    gates: GateReport

    @field_serializer("send_at")
    def _iso(self, value: datetime | None) -> str | None:
        return value.isoformat() if value else None  # "+00:00", as datetime.fromisoformat reads it

    @model_validator(mode="after")
    def _plain_file_names(self) -> VariantRecord:
        for name in (self.html_file, self.text_file, self.eml_file):
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"file name {name!r} of variant {self.segment!r} is not a plain file name")
        return self


class BuildRecord(BaseModel):
    """The whole build: the edition, the template and input fingerprints, and every variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT
    edition: str
    title: str
    template: str
    template_sha256: str
    inputs_sha256: str
    # each input's sha256 by name (`issues/articles/x.md`, `templates/digest/`, ...), so a change
    # after the build can be named; empty in builds made before it was recorded
    inputs: dict[str, str] = Field(default_factory=dict)
    variants: tuple[VariantRecord, ...]

    @model_validator(mode="before")
    @classmethod
    def _variants_from_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("variants"), dict):
            data = {**data, "variants": [
                {**entry, "segment": segment} if isinstance(entry, dict) else entry
                for segment, entry in data["variants"].items()
            ]}
        return data

    @field_serializer("variants")
    def _variants_as_mapping(self, variants: tuple[VariantRecord, ...]) -> dict[str, dict[str, Any]]:
        return {
            v.segment: v.model_dump(mode="json", by_alias=True, exclude={"segment"}) for v in variants
        }

    @property
    def failed(self) -> list[str]:
        """Segments that failed a quality gate."""
        return [v.segment for v in self.variants if v.gates.failed]

    def variant(self, segment: str) -> VariantRecord:
        for v in self.variants:
            if v.segment == segment:
                return v
        raise NotFound(f"no variant {segment!r} in edition {self.edition}")

    def to_json(self) -> str:
        """build.json's text: stable key order, no timestamps, so equal builds give equal bytes."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildRecord:
        """Parse build.json; ValueError saying what is wrong (a field, a type) when it is not a record."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ValueError(f"{where}: {first['msg']}") from None
