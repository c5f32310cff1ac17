import pytest

from newsletter.content.yaml_source import parse_yaml
from newsletter.errors import ProblemsError


def test_positions_of_values_and_keys() -> None:
    doc = parse_yaml("title: x\nsegments:\n  wales:\n    subject: Hi\n", "m.yaml")
    assert doc.data == {"title": "x", "segments": {"wales": {"subject": "Hi"}}}
    assert doc.where(("segments", "wales", "subject")) == (4, 14)
    assert doc.where(("segments", "wales"), key=True) == (3, 3)
    assert str(doc.problem(("title",), "bad", hint="fix")) == "m.yaml:1:8: error: bad (hint: fix)"


def test_missing_path_falls_back_to_nearest_parent() -> None:
    doc = parse_yaml("a:\n  b: 1\n", "f.yaml")
    assert doc.where(("a", "zzz")) == (2, 3)


def test_duplicate_keys_are_reported() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert [(p.line, p.message) for p in doc.duplicate_keys] == [(3, "duplicate key 'a'")]


def test_syntax_error_has_position() -> None:
    with pytest.raises(ProblemsError) as info:
        parse_yaml("a: [1,\nb: 2", "f.yaml")
    assert info.value.problems[0].file == "f.yaml"
    assert info.value.problems[0].line == 2


def test_line_offset_for_front_matter() -> None:
    doc = parse_yaml("title: x\n", "a.md", line_offset=1)
    assert doc.where(("title",)) == (2, 8)
