"""Reading subscriber spreadsheets row by row: CSV (any of `,` `;` tab; BOM; CRLF; quoted
delimiters; UTF-8 / UTF-16 or, failing that, Windows-1252 with a warning) and XLSX.

Headers are matched to fields by alias ("E-mail Address", "Forename", ...); `--map COLUMN=field`
overrides; other columns become free attributes. Row numbers are the file's own (header = row 1).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openpyxl import load_workbook

from newsletter.errors import ImportFileError
from newsletter.members.subscribers import CONTROL_CHARS, display_text

FIELDS = ("email", "first_name", "last_name", "name", "organisation", "region", "member_type",
          "joined_at", "consent_version")
ALIASES: dict[str, str] = {}
for _field, _names in {
    "email": ("email", "e-mail", "email address", "e-mail address", "mail", "email_address",
              "emailaddress", "work email", "primary email"),
    "first_name": ("first name", "firstname", "first_name", "forename", "given name", "given_name"),
    "last_name": ("last name", "lastname", "last_name", "surname", "family name", "family_name"),
    "name": ("name", "full name", "fullname", "full_name", "member name", "contact name"),
    "organisation": ("organisation", "organization", "org", "company", "employer", "council",
                     "authority", "organisation name", "organization name"),
    "region": ("region", "area", "nation", "branch", "region name"),
    "member_type": ("member type", "member_type", "membership type", "membership", "type",
                    "category", "grade", "membership category"),
    "joined_at": ("joined", "joined at", "joined_at", "join date", "date joined", "member since",
                  "joined on"),
    "consent_version": ("consent version", "consent_version", "consent wording"),
}.items():
    for _name in _names:
        ALIASES[re.sub(r"[^a-z0-9]", "", _name.lower())] = _field
DELIMITERS = (",", ";", "\t")
SNIFF_BYTES = 64 * 1024
# The csv module refuses fields over 131,072 characters by default; allow long free-text cells,
# but keep a bound so a file with a stray quote cannot swallow gigabytes into one field.
CSV_FIELD_LIMIT = 10 * 1024 * 1024


def header_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class SourceRow:
    number: int  # row in the file (header is row 1)
    values: dict[str, str]  # field -> cell text
    attributes: dict[str, str]
    raw: list[str]
    cleaned: tuple[str, ...] = ()  # columns whose control characters were removed


@dataclass
class RowReader:
    path: Path
    header: list[str]
    columns: list[tuple[str, str]]  # per column: ("field", name) | ("attr", key) | ("ignore", "")
    cells: Iterator[tuple[int, list[str]]]
    size: int
    position_of: Any
    warnings: list[str] = field(default_factory=list)

    def position(self) -> int:
        return int(self.position_of())

    def rows(self) -> Iterator[SourceRow]:
        width = len(self.header)
        fields = [(i, name) for i, (kind, name) in enumerate(self.columns) if kind == "field"]
        attrs = [(i, key) for i, (kind, key) in enumerate(self.columns) if kind == "attr"]
        search = CONTROL_CHARS.search
        for number, cells in self.cells:
            cleaned: tuple[str, ...] = ()
            joined = "".join(cells)
            if search(joined):
                cleaned = tuple(self._column_name(i) for i, c in enumerate(cells) if search(c))
                cells = [CONTROL_CHARS.sub("", c) for c in cells]
                joined = "".join(cells)
            if not joined or joined.isspace():
                continue  # blank line (every cell empty or spaces)
            count = len(cells)
            if count >= width:
                values = {name: cells[i] for i, name in fields}
                attributes = {key: cells[i] for i, key in attrs if cells[i].strip()}
            else:  # a short row: the missing cells are not given
                values = {name: cells[i] for i, name in fields if i < count}
                attributes = {key: cells[i] for i, key in attrs if i < count and cells[i].strip()}
            if count > width and any(c.strip() for c in cells[width:]):
                values["__error__"] = (f"row has {count} cells but the header has {width}; "
                                       "quote values that contain the delimiter")
            yield SourceRow(number, values, attributes, cells, cleaned)

    def _column_name(self, index: int) -> str:
        if index >= len(self.columns):
            return f"column {index + 1}"
        kind, name = self.columns[index]
        return name if kind == "field" else f"attributes.{name}" if kind == "attr" else self.header[index]


def _plan_columns(header: list[str], mapping: dict[str, str]) -> list[tuple[str, str]]:
    wanted = {header_key(k): v.strip() for k, v in mapping.items()}
    known = {header_key(h) for h in header}
    for column in mapping:
        if header_key(column) not in known:
            raise ImportFileError(f"--map names column {column!r}, which is not in the header",
                                  hint="columns: " + ", ".join(header))
    columns: list[tuple[str, str]] = []
    used: dict[str, str] = {}
    for title in header:
        key = header_key(title)
        target = wanted.get(key) or ALIASES.get(key)
        if target == "ignore" or not key:
            columns.append(("ignore", ""))
        elif target and target.startswith("attributes."):
            columns.append(("attr", target.split(".", 1)[1]))
        elif target in FIELDS:
            if target in used:
                raise ImportFileError(
                    f"columns {used[target]!r} and {title!r} both look like {target}",
                    hint=f"pick one with --map {title!r}=ignore (or --map COLUMN=attributes.NAME)")
            used[target] = title
            columns.append(("field", target))
        elif target:
            raise ImportFileError(f"--map: unknown field {target!r}",
                                  hint="fields: " + ", ".join(FIELDS) + ", attributes.NAME, ignore")
        else:
            columns.append(("attr", re.sub(r"[^a-z0-9]+", "_", title.strip().lower()).strip("_")))
    if "email" not in used:
        raise ImportFileError("no email column found in the header: " + ", ".join(header),
                              hint="name the column 'Email' or use --map COLUMN=email")
    return columns


def _detect_encoding(path: Path) -> tuple[str, list[str]]:
    with path.open("rb") as f:
        start = f.read(4)
        if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", []
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := f.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252", [f"{path.name} is not UTF-8; read it as Windows-1252 (cp1252). "
                              "Check accented names, or save the file as CSV UTF-8"]
    return "utf-8-sig", []


def _sniff_delimiter(sample: str) -> str:
    """The delimiter that splits the first lines into the most, equally wide, columns."""
    best, best_score = ",", (-1, -1)
    lines = sample.splitlines(keepends=True)[:20]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line of the sample may be cut short
    for delim in DELIMITERS:
        widths = [len(r) for r in csv.reader(lines, delimiter=delim) if any(c.strip() for c in r)]
        if not widths:
            continue
        consistent = sum(1 for w in widths if w == widths[0])
        score = (consistent if widths[0] > 1 else 0, widths[0])
        if score > best_score:
            best, best_score = delim, score
    return best


@contextmanager
def _open_csv(path: Path) -> Iterator[tuple[IO[str], Any, list[str], str]]:
    encoding, warnings = _detect_encoding(path)
    raw = path.open("rb")
    try:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        sample = text.read(SNIFF_BYTES)
        text.seek(0)
        yield text, raw.tell, warnings, _sniff_delimiter(sample)
    finally:
        raw.close()


def _csv_cells(text: IO[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text, delimiter=delimiter)
    previous = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # Stop here: after a broken quoted field the following lines cannot be trusted.
            raise csv.Error(f"row {previous + 1}: {exc}") from None
        yield previous + 1, cells
        previous = reader.line_num


def _xlsx_cells(path: Path) -> Iterator[tuple[int, list[str]]]:

    # Cached values, as the spreadsheet last showed them; alongside, the formulas, because a
    # workbook saved by a program that does not calculate (=HYPERLINK(...) from an export) has no
    # cached value: then the formula text is imported as plain text, as a CSV would give it.
    book = load_workbook(path, read_only=True, data_only=True)
    formulas = load_workbook(path, read_only=True, data_only=False)
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        formula_rows = formulas.worksheets[0].iter_rows(values_only=True)
        for number, (row, formula_row) in enumerate(zip(rows, formula_rows, strict=False), start=1):
            formula_row = (*formula_row, *[None] * (len(row) - len(formula_row)))
            yield number, [_cell_text(f if v is None and isinstance(f, str) else v)
                           for v, f in zip(row, formula_row, strict=False)]
    finally:
        book.close()
        formulas.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@contextmanager
def open_rows(path: Path, mapping: dict[str, str]) -> Iterator[RowReader]:
    if not path.is_file():
        raise ImportFileError(f"{path}: file not found")
    size = path.stat().st_size
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            cells = _xlsx_cells(path)
            first = next(cells, None)
        except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
            raise ImportFileError(f"{path}: cannot read as a spreadsheet: {exc}") from None
        header = [display_text(c).strip() for c in first[1]] if first else []
        yield _reader(path, header, mapping, cells, size, lambda: 0, [])
        return
    with _open_csv(path) as (text, tell, warnings, delimiter):
        cells = _csv_cells(text, delimiter)
        try:
            first = next(cells, None)
        except csv.Error as exc:
            raise ImportFileError(f"{path}: not a readable CSV file: {exc}") from None
        header = [display_text(c).strip() for c in first[1]] if first else []
        yield _reader(path, header, mapping, _safe(path, cells), size, tell, warnings)


def _safe(path: Path, cells: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    try:
        yield from cells
    except csv.Error as exc:
        hint = ("rows before this one were imported; fix the row and re-run the import (it is "
                "safe to repeat)")
        if "field limit" in str(exc):
            hint = (f"a cell is longer than {CSV_FIELD_LIMIT:,} characters, often an unclosed quote; "
                    + hint)
        raise ImportFileError(f"{path}: CSV error: {exc}", hint=hint) from None


def _reader(path: Path, header: list[str], mapping: dict[str, str],
            cells: Iterator[tuple[int, list[str]]], size: int, tell: Any,
            warnings: list[str]) -> RowReader:
    if not any(header):
        raise ImportFileError(f"{path}: the file is empty or has no header row",
                              hint="the first row must name the columns, e.g. Email,First name")
    try:
        columns = _plan_columns(header, mapping)
    except ImportFileError as exc:
        raise ImportFileError(f"{path}: {exc.message}", hint=exc.hint) from None
    return RowReader(path, header, columns, cells, size, tell, warnings)
