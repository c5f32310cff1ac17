"""Hostile and malformed YAML never crashes the tool.

Each case is put into an article's front matter, a manifest and subscribers/segments.yaml of a copy
of the sample project, and run through the real CLI (`articles list` and `check` for the article,
`check` for the manifest, `segments check` and `check` for segments.yaml). Every run must end with
exit 2 and a `file:line:col: ... (hint: ...)` line pointing into the lines of the case, within 1 s
and 100 MB.

Time and memory are generous guards, not benchmarks: the runs happen in one child process (the
program imported once, before the clock starts), which has an address-space limit so that a
regression cannot take the machine's memory; the time is the child's CPU time (what the input costs,
not how busy the machine is), measured without tracing, then each run is repeated under tracemalloc
for its peak.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.content import load_manifest
from newsletter.errors import InputError
from newsletter.render import build_from_edition

REPO = Path(__file__).resolve().parent.parent
ARTICLE = "issues/articles/gdpr-roadmap.md"
MANIFEST = "issues/2026-12.yaml"
SEGMENTS = "subscribers/segments.yaml"
SECONDS = 1.0
BYTES = 100 * 2**20

BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{level}: &{level} [{', '.join(['*' + below] * 9)}]\n" for below, level in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES = {
    "tags-5": "tags: 5\n",
    "regions-5": "regions: 5\n",
    "non-string-key": "5: x\n",
    "recursive-alias": "tags: &t [a, *t]\n",
    "complex-key": "? {k: v}\n: x\n",
    "unknown-tag": "author: !custom foo\n",
    "nul-byte": "author: a\x00b\n",
    "deep-brackets": "tags: " + "[" * 3000 + "]" * 3000 + "\n",
    "lone-surrogate": 'author: "\\ud800"\n',
    "alias-bomb": BOMB,
}


def _insert(text: str, line: int, snippet: str, *, replace_line: bool = False) -> tuple[str, int, int]:
    """`text` with `snippet` put at 1-based `line`; the snippet's first and last line numbers."""
    lines = text.splitlines(keepends=True)
    lines[line - 1: line - 1 + (1 if replace_line else 0)] = [snippet]
    return "".join(lines), line, line + snippet.count("\n") - 1


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


def place(root: Path, kind: str, case: str) -> tuple[str, int, int]:
    """Write the case into the project's file of `kind`; (file, first line, last line)."""
    snippet = CASES[case]
    if kind == "article":
        name = ARTICLE
        text = (root / name).read_text("utf-8")
        key = snippet.split(":")[0]
        if re.match(r"^[a-z_]+$", key) and re.search(rf"^{key}:", text, re.M):
            new, first, last = _insert(text, _line_of(text, f"{key}:"), snippet, replace_line=True)
        else:  # before the closing ---
            new, first, last = _insert(text, text.splitlines().index("---", 1) + 1, snippet)
    elif kind == "manifest":
        name = MANIFEST
        text = (root / name).read_text("utf-8")
        if case in ("tags-5", "regions-5"):  # where tags and regions belong: the articles query
            new, first, last = _insert(text, _line_of(text, "    tags:"), "    " + snippet,
                                       replace_line=case == "tags-5")
        else:
            new, first, last = _insert(text, _line_of(text, "segments:"), snippet)
    else:
        name = SEGMENTS
        text = (root / name).read_text("utf-8")
        london = _line_of(text, "  london:")
        if case == "tags-5":  # a field a segment does not have
            new, first, last = _insert(text, london + 1, "    " + snippet)
        elif case == "regions-5":  # a rule's region
            new, first, last = _insert(text, london + 3, "      region: 5\n", replace_line=True)
        else:
            new, first, last = _insert(text, _line_of(text, "segments:"), snippet)
    (root / name).write_text(new, "utf-8")
    return name, first, last


COMMANDS = {
    "article": [["articles", "list"], ["check", MANIFEST]],
    "manifest": [["check", MANIFEST]],
    "segments": [["segments", "check"], ["check", MANIFEST]],
}

DRIVER = textwrap.dedent("""
    import io, json, os, resource, sys, time, tracemalloc
    from contextlib import redirect_stderr, redirect_stdout

    import newsletter.content, newsletter.members, newsletter.render  # command bodies import these
    from newsletter.cli import main

    def run(cwd, args):
        os.chdir(cwd)
        os.environ["NEWSLETTER_PROJECT_DIR"] = cwd
        os.environ["NEWSLETTER_DATABASE_URL"] = "sqlite:///" + os.path.join(cwd, "newsletter.db")
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(args)
        return code, out.getvalue() + err.getvalue()

    runs = json.loads(sys.argv[1])
    run(*runs[0])  # warm-up: the first run also loads what the commands load lazily
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))  # a runaway dies, not the machine
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results = []
    for cwd, args in runs:
        started = time.process_time()
        code, output = run(cwd, args)
        seconds = time.process_time() - started
        tracemalloc.start()
        run(cwd, args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
        results.append({"code": code, "output": output, "seconds": seconds, "peak": peak, "rss_growth": rss_growth})
    print(json.dumps(results))
""")


@dataclass(frozen=True)
class Run:
    case: str
    kind: str
    args: tuple[str, ...]
    file: str
    first: int
    last: int


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], tuple[Run, dict]]:
    """Every (case, kind, command) run once in a child process."""
    base = tmp_path_factory.mktemp("hostile")
    plan: list[Run] = []
    dirs: list[str] = []
    for case in CASES:
        for kind, commands in COMMANDS.items():
            root = base / f"{case}-{kind}"
            root.mkdir()
            shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
            for folder in ("issues", "templates", "subscribers"):
                shutil.copytree(REPO / folder, root / folder)
            file, first, last = place(root, kind, case)
            for args in commands:
                plan.append(Run(case, kind, tuple(args), file, first, last))
                dirs.append(str(root))
    argv = json.dumps([[d, list(r.args)] for d, r in zip(dirs, plan, strict=True)])
    child = subprocess.run([sys.executable, "-c", DRIVER, argv], capture_output=True, text=True, timeout=600,
                           cwd=base)
    assert child.returncode == 0, child.stderr[-3000:]
    measured = json.loads(child.stdout)
    return {(r.case, r.kind, " ".join(r.args)): (r, m) for r, m in zip(plan, measured, strict=True)}


@pytest.mark.parametrize("kind, command", [(k, " ".join(c)) for k, cs in COMMANDS.items() for c in cs])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_yaml_is_exit_2_with_file_line_and_hint(results, case: str, kind: str, command: str) -> None:
    run, measured = results[(case, kind, command)]
    output = measured["output"]
    assert measured["code"] == 2, output
    assert "internal error" not in output and "Traceback" not in output
    found = re.findall(rf"^(?:\S*/)?{re.escape(run.file)}:(\d+):(\d+): (?:error|warning): (.*)$", output, re.M)
    assert found, output
    at_case = [(int(line), message) for line, _, message in found if run.first <= int(line) <= run.last]
    assert at_case, f"no problem on lines {run.first}-{run.last}:\n{output}"
    assert any("(hint: " in message for _, message in at_case), output
    assert measured["seconds"] < SECONDS, measured["seconds"]
    assert measured["peak"] < BYTES, measured["peak"]
    assert measured["rss_growth"] < BYTES, measured["rss_growth"]


def test_the_cases_say_what_is_wrong(results) -> None:
    """The messages, for the record (one file kind each): plain words, not parser internals."""
    expected = {
        ("tags-5", "article"): "tags must be a list of text, not 5",
        ("regions-5", "article"): "regions must be a list of regions, not 5",
        ("tags-5", "manifest"): "tags must be a list of text, not 5",
        ("regions-5", "manifest"): "regions must be a region or a list of regions, not 5",
        ("non-string-key", "manifest"): "unknown field '5' in the manifest",
        ("recursive-alias", "segments"): "alias *t refers to the collection it is inside (a loop)",
        ("complex-key", "article"): "a key must be plain text, not a mapping",
        ("unknown-tag", "manifest"): "the tag !custom is not supported here",
        ("nul-byte", "segments"): "the character U+0000 is not allowed in YAML",
        ("deep-brackets", "article"): "nested more than 50 levels deep",
        ("lone-surrogate", "manifest"): "the text contains a lone surrogate (\\ud800), which is not a character",
        ("alias-bomb", "segments"): "aliases repeat more than 1,000 values in this file",
    }
    for (case, kind), message in expected.items():
        command = " ".join(COMMANDS[kind][0])
        run, measured = results[(case, kind, command)]
        assert f": error: {message}" in measured["output"], measured["output"]


# ---------------------------------------------------------------- segment names become file names


EVIL = "../../../evil"


def _evil_project(project: Path) -> None:
    segments = project / SEGMENTS
    segments.write_text(segments.read_text("utf-8") + f'  "{EVIL}":\n    rule: {{region: london}}\n', "utf-8")
    manifest = project / MANIFEST
    text = manifest.read_text("utf-8")
    manifest.write_text(text.replace("segments:\n", f'segments:\n  "{EVIL}": {{}}\n', 1), "utf-8")


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_segment_named_like_a_path_is_refused_by_check_with_its_lines(project: Path, cli) -> None:
    _evil_project(project)
    before = _files(project.parent)
    result = cli("check", MANIFEST)
    assert result.exit_code == 2
    output = result.stdout + result.stderr
    segments_line = _line_of((project / SEGMENTS).read_text("utf-8"), f'  "{EVIL}"')
    manifest_line = _line_of((project / MANIFEST).read_text("utf-8"), f'  "{EVIL}"')
    assert f"{SEGMENTS}:{segments_line}:3: error: segment name '{EVIL}' is not a slug" in output
    assert f"{MANIFEST}:{manifest_line}:3: error: segment name '{EVIL}' is not a slug" in output
    assert "nothing built" in output
    assert _files(project.parent) == before


def test_build_writes_nothing_outside_out(project: Path, cli) -> None:
    _evil_project(project)
    before = _files(project.parent)
    result = cli("build", MANIFEST, "--out", "out")
    assert result.exit_code == 2
    assert not (project / "out").exists()
    assert _files(project.parent) == before


def test_the_build_itself_refuses_a_segment_name_that_leaves_its_directory(project: Path) -> None:
    """A second guard, for an edition that did not come through the manifest check."""
    settings = load_settings(project)
    edition = load_manifest(project / MANIFEST, settings)
    first = edition.variants[0]
    for name in (EVIL, "/tmp/evil", ".hidden", "a/b"):
        bad = replace(edition, variants=(first, replace(first, segment=name)))
        with pytest.raises(InputError, match="would write outside"):
            build_from_edition(bad, settings, project / "out")
        assert not (project / "out").exists()
    assert not list(project.parent.rglob("evil*"))


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("host", ["https://api.sendgrid.com:99999", "https://api.sendgrid.com:abc",
                                  "https://api.sendgrid.com:0", "https://[api.sendgrid.com"])
def test_a_sendgrid_host_with_a_bad_port_is_a_settings_error(project: Path, cli, monkeypatch, host: str) -> None:
    monkeypatch.setenv("SENDGRID_HOST", host)
    result = cli("check", MANIFEST)
    assert result.exit_code == 2
    assert "sendgrid_host (SENDGRID_HOST) has a bad port or address" in result.stderr
    assert "internal error" not in result.stderr + result.stdout
