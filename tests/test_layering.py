"""The layers of dlc, checked on the source: arrows go one way and no modules import each other in a loop.

    cli, the Python API (dlc, dlc.api)  →  stages (training, analysis, optimize, quickstart, zoo, exporters,
    passes, compiler, runtime)  →  core

Every import counts, also those inside functions (dlc imports heavy modules lazily there).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"dlc": ROOT / "dlc", "dlc.exporters": ROOT / "exporters", "dlc.passes": ROOT / "passes",
                "dlc.runtime": ROOT / "runtime"}
CORE = {"dlc.version", "dlc.errors", "dlc.fileio", "dlc.specs", "dlc.numerics", "dlc.artifact", "dlc.target",
        "dlc.onnxio", "dlc.child", "dlc.elf", "dlc.signing"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            if "board_files" in path.parts:  # scripts that run on the board, not modules of dlc
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The dlc modules `path` imports (a package's submodule where `from package import submodule`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _violations(rule) -> list[str]:
    return sorted(f"{a} imports {b}" for a, targets in GRAPH.items() for b in targets if rule(a, b))


def test_the_source_tree_was_found():
    assert {"dlc.cli", "dlc.compiler.build", "dlc.runtime.session", "dlc.passes.infra", "dlc.exporters.pytorch"} \
        <= set(MODULES)
    assert GRAPH["dlc.compiler.build"], "imports inside functions must be seen too"


def test_the_core_imports_no_stage():
    assert _violations(lambda a, b: a in CORE and b not in CORE) == []


def test_the_runtime_never_imports_the_compiler():
    assert _violations(lambda a, b: a.startswith("dlc.runtime") and b.startswith("dlc.compiler")) == []


def test_passes_use_only_the_core_and_each_other():
    assert _violations(lambda a, b: a.startswith("dlc.passes") and not (b in CORE or b.startswith("dlc.passes"))) \
        == []


def test_nothing_imports_the_python_api():
    """`dlc` (the package) is the API facade over every stage: importing it from inside would loop."""
    assert _violations(lambda a, b: b in ("dlc", "dlc.api") and a not in ("dlc", "dlc.api")) == []


def test_nothing_imports_the_cli():
    assert _violations(lambda a, b: b.startswith("dlc.cli") and not a.startswith(("dlc.cli", "dlc.__main__"))) == []


def test_no_modules_import_each_other_in_a_loop():
    cycles = [sorted(c) for c in _strongly_connected(GRAPH) if len(c) > 1]
    assert cycles == []


@pytest.mark.parametrize("rule", [lambda a, b: a in CORE and b not in CORE])
def test_the_checks_can_fail(rule):
    """A deliberate violation is caught: the checks are not vacuous."""
    graph = {**GRAPH, "dlc.errors": {"dlc.compiler.build"}}
    assert any(rule(a, b) for a, targets in graph.items() for b in targets)
    assert [c for c in _strongly_connected({"a": {"b"}, "b": {"a"}}) if len(c) > 1]


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                result.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_a_regular_install_holds_every_module(tmp_path):
    """`pip install .` (not editable) ships exactly the packages pyproject.toml lists: a package folder left
    off that list is missing from every wheel (dlc.compiler.schedules once was: `dlc compile` died on import)."""
    import shutil
    import subprocess
    import sys

    pytest.importorskip("setuptools", reason="building dlc without build isolation needs setuptools here")
    source, target = tmp_path / "source", tmp_path / "installed"  # a copy: setuptools would reuse ROOT/build
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(folder, source / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--no-compile", "--target", str(target), str(source)], check=True, timeout=300,
                   capture_output=True)
    installed = {".".join(p.relative_to(target).with_suffix("").parts).removesuffix(".__init__")
                 for p in (target / "dlc").rglob("*.py") if "board_files" not in p.parts}
    assert installed == set(_modules())
