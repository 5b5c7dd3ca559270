"""The command-line package's shape: no import circle between its modules, and a light start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "oa_dagster" / "cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cli_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports, wherever in the file (a lazy import inside a function closes a
    circle as surely as one at the top)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, as the modules around it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module) :] + [module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph[module]):
            if found := visit(target):
                return found
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if found := visit(module):
            return found
    return None


def test_the_cli_modules_import_each_other_without_a_circle() -> None:
    paths = sorted(PACKAGE.glob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {_module_name(path): _cli_imports(path, modules) - {_module_name(path)} for path in paths}
    assert graph["oa_dagster.cli"] >= {"oa_dagster.cli.sources", "oa_dagster.cli.platform", "oa_dagster.cli.hooks"}
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check sees one


def test_each_cli_module_imports_alone_in_a_fresh_interpreter() -> None:
    """A circle of top-level `from x import y` fails only when a particular module is imported first: each one
    is, in its own interpreter."""
    names = sorted(_module_name(path) for path in PACKAGE.glob("*.py") if path.name != "__main__.py")
    names.append("oa_dagster.local_home")
    for name in names:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_building_the_cli_parser_imports_neither_dagster_nor_the_web_stack() -> None:
    """Contributors run `oa-dagster check` many times while editing a source: the command's start-up (every
    subcommand's parser built) leaves Dagster, SQLAlchemy, the web app and the geodata libraries to the commands
    that use them."""
    heavy = ("dagster", "sqlalchemy", "starlette", "uvicorn", "numpy", "shapely", "pyproj", "pyarrow")
    code = (
        "import sys\nfrom oa_dagster.cli import build_parser\nbuild_parser()\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oa_dagster.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: oa-dagster" in done.stdout


def test_the_readme_names_every_package_and_module() -> None:
    """The README's module list: every package and module of `oa_dagster/` (as `oa_dagster/x/` or, after the first
    of a line, `x/`), and every module of the command line."""
    readme = (ROOT / "README.md").read_text()
    listing = readme[: readme.index("## First steps")]
    unnamed = []
    for path in sorted((ROOT / "oa_dagster").iterdir()):
        if path.is_dir() and path.name != "__pycache__":
            names = (f"`oa_dagster/{path.name}/`", f"`{path.name}/`")
        elif path.suffix == ".py" and path.name != "__init__.py":
            names = (f"`oa_dagster/{path.name}`", f"`{path.name}`")
        else:
            continue
        if not any(name in listing for name in names):
            unnamed.append(path.name)
    unnamed += [path.name for path in sorted(PACKAGE.glob("*.py")) if f"`{path.name}`" not in listing]
    assert [name for name in unnamed if not name.startswith("__")] == []
