"""The package layout keeps the pipeline readable: data flows downstream only, and another package is
used through its public API (`from newsletter.delivery import X`), never through one of its submodules.
Read from the source with `ast`, so imports inside functions or under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "newsletter"

# What each package must never import: a stage knows nothing of what comes after it.
FORBIDDEN: dict[str, set[str]] = {
    "content": {"render", "members", "delivery", "schedule", "web", "cli"},
    "render": {"members", "delivery", "schedule", "web", "cli"},
    "members": {"delivery", "schedule", "web", "cli"},
    "delivery": {"schedule", "web", "cli"},
    "schedule": {"web", "cli"},
    "accounts": {"web", "cli"},
}


def imports_of(path: Path, root: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for each import statement in `path`, a file under
    `root` (the directory holding the top-level package). Relative imports are made absolute."""
    parts = path.relative_to(root).with_suffix("").parts
    package = list(parts[:-1])  # a module's package; for __init__.py the package itself
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([module] if module else [])])
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def cross_package_imports(root: Path) -> list[tuple[str, str, str, bool]]:
    """(file:line, importing package, imported package, reaches a submodule) for every import of one
    package of newsletter/ by a module outside it."""
    top = root / "newsletter"
    packages = {p.name for p in top.iterdir() if (p / "__init__.py").is_file()}

    def exported(package: str) -> set[str]:
        for node in ast.parse((top / package / "__init__.py").read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                return set(ast.literal_eval(node.value))
        return set()

    def is_submodule(package: str, name: str) -> bool:
        """A module file of the package, unless the package exports a name that shadows it
        (`coverage` the function hides `members/coverage.py`)."""
        is_file = (top / package / f"{name}.py").is_file() or (top / package / name / "__init__.py").is_file()
        return is_file and name not in exported(package)

    edges = []
    for path in sorted(top.rglob("*.py")):
        rel = path.relative_to(top).parts
        if rel[:2] == ("migrations", "versions"):
            continue
        owner = rel[0] if len(rel) > 1 else "newsletter"
        for line, module, names in imports_of(path, root):
            dotted = module.split(".")
            if module == "newsletter":  # from newsletter import delivery
                targets = [(name, False) for name in names if name in packages]
            elif dotted[0] == "newsletter" and dotted[1] in packages:
                deep = len(dotted) > 2 or any(is_submodule(dotted[1], name) for name in names)
                targets = [(dotted[1], deep)]
            else:
                targets = []
            for target, deep in targets:
                if target != owner:
                    edges.append((f"{path.relative_to(root)}:{line}", owner, target, deep))
    return edges


def test_the_stage_packages_exist_and_each_declares_its_api() -> None:
    for name in ("content", "render", "members", "delivery", "schedule", "cli", "web", "accounts"):
        module = importlib.import_module(f"newsletter.{name}")
        exported = getattr(module, "__all__", None)
        assert exported, f"newsletter/{name}/__init__.py has no __all__"
        missing = [symbol for symbol in exported if not hasattr(module, symbol)]
        assert not missing, f"newsletter.{name}.__all__ names what it does not define: {missing}"


def test_only_settings_database_models_errors_and_regions_sit_at_the_top() -> None:
    modules = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "config.py", "db.py", "errors.py", "models.py", "regions.py"]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_data_flows_downstream_only(package: str) -> None:
    wrong = [
        f"{where} imports newsletter.{target}"
        for where, owner, target, _deep in cross_package_imports(PACKAGE_DIR.parent)
        if owner == package and target in FORBIDDEN[package]
    ]
    assert not wrong, f"newsletter.{package} must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(wrong)


def test_no_package_imports_a_submodule_of_another() -> None:
    wrong = [f"{where} reaches into newsletter.{target}" for where, _o, target, deep in cross_package_imports(PACKAGE_DIR.parent) if deep]
    assert not wrong, "import the package (from newsletter.delivery import X), never its submodules:\n" + "\n".join(wrong)


def test_the_checker_catches_each_kind_of_wrong_import(tmp_path: Path) -> None:
    """The rules would pass vacuously if imports were missed: a small tree with one of each."""
    top = tmp_path / "newsletter"
    for package in ("content", "render", "delivery"):
        (top / package).mkdir(parents=True)
        (top / package / "__init__.py").write_text("")
    (top / "__init__.py").write_text("")
    (top / "delivery" / "tokens.py").write_text("")
    (top / "delivery" / "plan.py").write_text("")
    (top / "delivery" / "__init__.py").write_text("from newsletter.delivery.plan import plan\n__all__ = ['plan']\n")
    (top / "content" / "a.py").write_text("def f() -> None:\n    from ..render import build\n")
    (top / "content" / "b.py").write_text("import newsletter.delivery.tokens\n")
    (top / "content" / "c.py").write_text("from newsletter.delivery import tokens\n")
    (top / "content" / "d.py").write_text("from newsletter import render\nfrom . import a\n")
    (top / "render" / "e.py").write_text("from newsletter.delivery import Sender, plan\n")
    edges = cross_package_imports(tmp_path)
    assert edges == [
        ("newsletter/content/a.py:2", "content", "render", False),
        ("newsletter/content/b.py:1", "content", "delivery", True),
        ("newsletter/content/c.py:1", "content", "delivery", True),
        ("newsletter/content/d.py:1", "content", "render", False),
        ("newsletter/render/e.py:1", "render", "delivery", False),
    ]
