"""The house rules: no import cycles between modules, and the core never imports napari or Qt."""

import ast
from pathlib import Path

import napari_mammo

PACKAGE = Path(napari_mammo.__file__).parent
TOP = ("plugin", "cli", "demo", "__main__")
"""The napari side and the command line sit on top of the core; everything else is core."""
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "napari_mammo.plugin")


def _module(path: Path) -> str:
    """The dotted module name of a source file in the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package with the modules it imports (at any depth of the file)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[_module(path)] = names
    return graph


def test_no_module_imports_relatively():
    for path in PACKAGE.rglob("*.py"):
        relative = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path}: relative import"


def test_the_core_never_imports_napari_or_qt():
    for module, names in _imports().items():
        if module.split(".")[1:2] and module.split(".")[1] in TOP:
            continue
        gui = {n for n in names if n.split(".")[0] in GUI or n.startswith("napari_mammo.plugin")}
        assert not gui, f"{module} (core) imports {sorted(gui)}"


def test_no_import_cycles():
    graph = _imports()
    edges = {m: {n for n in names if n in graph and n != m and not m.startswith(n + ".")} for m, names in graph.items()}
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for target in sorted(edges[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)


def test_torch_is_imported_lazily():
    import subprocess
    import sys

    code = ("import sys, napari_mammo, napari_mammo.cli, napari_mammo.io.images, napari_mammo.evaluation.crossval; "
            "print(sorted(m for m in ('torch', 'timm', 'napari', 'qtpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
