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


@pytest.mark.parametrize("text, message", [
    ("a: 2026-02-30\n", "cannot read '2026-02-30' as a date: day is out of range for month"),
    ("b: &x {k: 1}\nc:\n  <<: *x\n", "merge keys (<<) are not supported"),
    ("a: !!python/name:os.system x\n", "the tag !!python/name:os.system is not supported here"),
    ("a: !!binary aGk=\n", "the tag !!binary is not supported here"),
    ("a: !!int x\n", "cannot read 'x' as !!int"),
    ("a: &m {b: *m}\n", "alias *m refers to the collection it is inside (a loop)"),
    ("a: " + "{a: " * 60 + "1" + "}" * 60 + "\n", "nested more than 50 levels deep"),
])
def test_what_yaml_cannot_be_is_a_problem_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(ProblemsError) as info:
        parse_yaml(text, "f.yaml")
    (problem,) = info.value.problems
    assert problem.message.startswith(message) and problem.hint, problem


def test_keys_are_the_text_as_written() -> None:
    assert parse_yaml("5: x\nno: y\n~: z\n", "f.yaml").data == {"5": "x", "no": "y", "~": "z"}


def test_a_few_aliases_are_fine_and_a_bomb_is_refused_at_its_alias() -> None:
    doc = parse_yaml("a: &x [1, 2]\nb: *x\nc: *x\n", "f.yaml")
    assert doc.data == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    levels = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abc", "bcd", strict=True))
    with pytest.raises(ProblemsError) as info:
        parse_yaml(levels, "f.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.message) == (3, "aliases repeat more than 1,000 values in this file")  # c: 110 + 9 × 111


def test_a_surrogate_pair_is_one_character_and_a_lone_one_is_refused() -> None:
    assert parse_yaml('a: "\\ud83d\\ude00"\n', "f.yaml").data == {"a": "\U0001F600"}
    with pytest.raises(ProblemsError, match="lone surrogate"):
        parse_yaml('"\\udc00": x\n', "f.yaml")


def test_a_nul_byte_is_placed_with_the_line_offset() -> None:
    with pytest.raises(ProblemsError) as info:
        parse_yaml("a: 1\nb: x\x00\n", "a.md", line_offset=1)
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == (3, 5) and "U+0000" in problem.message
