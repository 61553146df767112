"""The import arrows: nothing imports training; face and motion never import each other; no module
imports itself through others (lazy imports inside functions included)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vasa"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False, library_only: bool = False) -> set[str]:
    """Absolute names a module imports: relative imports resolved, `from x import y` gives x and x.y.
    With `library_only`, not the imports that never run when the module is imported: under
    `if TYPE_CHECKING:` and `if __name__ == "__main__":` (there the module is a script, not itself)."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    skipped = set()
    if library_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ("TYPE_CHECKING" in ast.unparse(node.test)
                                              or ast.unparse(node.test) in ('__name__ == "__main__"',
                                                                             "__name__ == '__main__'")):
                skipped.update(id(inner) for inner in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")


def sources(under: str = "") -> list[Path]:
    folder = PACKAGE / under
    return sorted(folder.rglob("*.py")) if folder.is_dir() else []


def within(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


def test_walker_resolves_relative_and_nested_imports():
    text = "import os\nfrom . import train\nfrom ..motion import dit\n\ndef f():\n    import vasa.train.loop\n"
    names = imported_modules(text, "vasa.face.mesh")
    assert {"os", "vasa.face.train", "vasa.motion", "vasa.motion.dit", "vasa.train.loop"} <= names


def test_walker_sees_the_real_imports_of_a_module():
    names = imports_of(PACKAGE / "face" / "mesh" / "backend.py")
    assert {"vasa.face.geometry", "vasa.latents", "vasa.errors"} <= names


def test_only_the_command_line_reaches_training():
    importers = {p for p in sources() if not p.is_relative_to(PACKAGE / "train")
                 and any("train" in n.split(".") for n in imports_of(p))}
    assert importers == ENTRY_POINTS


def test_package_is_found():
    assert len(sources()) >= 10 and len(sources("face")) >= 5


ENTRY_POINTS = {PACKAGE / "cli.py"}  # the command line dispatches to every tool, the trainer included


@pytest.mark.parametrize("path", [p for p in sources() if p not in ENTRY_POINTS],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_imports_training(path):
    training = {n for n in imports_of(path) if "train" in n.split(".")}
    if path.is_relative_to(PACKAGE / "train"):  # trainers share their pieces (the face trainer the motion one's)
        training = {n for n in training if not within({n}, "vasa.train")}
    assert not training, f"{module_name(path)} imports {sorted(training)}"


@pytest.mark.parametrize("path", sources("face"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_face_does_not_import_motion(path):
    assert not within(imports_of(path), "vasa.motion")


@pytest.mark.parametrize("path", sources("motion"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_motion_does_not_import_face(path):
    assert not within(imports_of(path), "vasa.face")


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of its code (its own parent packages,
    which Python always runs first, left out)."""
    modules = {module_name(p): p for p in sources()}
    graph = {}
    for name, path in modules.items():
        imported = imported_modules(path.read_text(), name, path.name == "__init__.py", library_only=True)
        graph[name] = {m for m in imported if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_cycle_finder_and_walker_known_answers():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    text = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vasa.x\n"
            "def f():\n    import vasa.y\nif __name__ == '__main__':\n    import vasa.z\n")
    names = imported_modules(text, "vasa.m", library_only=True)
    assert "vasa.y" in names and "vasa.x" not in names and "vasa.z" not in names


def test_no_import_cycles_lazy_imports_included():
    graph = import_graph()
    assert "vasa.server.session" in graph["vasa.server.app"]  # the walker sees the package's real arrows
    assert not cycles(graph), cycles(graph)


# --- scripts/ --------------------------------------------------------------------------------------------
SCRIPTS = PACKAGE.parent / "scripts"
TESTS = PACKAGE.parent / "tests"


def script_shortcuts(source: str, scripts: set[str], tests: set[str]) -> list[str]:
    """What in a script's source reaches past the package: an import of another script or of a test module
    (or of a package named scripts or tests), and any change of sys.path (how such imports are made)."""
    found = sorted(f"imports {name}" for name in imported_modules(source, "script")
                   if name.split(".")[0] in scripts | tests | {"scripts", "tests"})
    for node in sorted(ast.walk(ast.parse(source)), key=lambda n: getattr(n, "lineno", 0)):
        targets = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func.value]  # sys.path.insert(...), sys.path.append(...)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(ast.unparse(t) == "sys.path" or ast.unparse(t).startswith("sys.path[") for t in targets):
            found.append(f"changes sys.path (line {node.lineno})")
    return found


def test_script_shortcut_finder_known_answers():
    text = ("import sys\nfrom pathlib import Path\nsys.path.insert(0, str(Path(__file__).parent))\n"
            "from eval_face import label\nimport test_face_neural as toy\nfrom tests.conftest import sine\n"
            "sys.path += ['x']\nprint(sys.path)\nimport numpy\nfrom vasa.evaluation import measure\n")
    assert script_shortcuts(text, {"eval_face", "eval_generate"}, {"test_face_neural", "conftest"}) == [
        "imports eval_face", "imports eval_face.label", "imports test_face_neural", "imports tests.conftest",
        "imports tests.conftest.sine", "changes sys.path (line 3)",
        "changes sys.path (line 7)"]


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_scripts_import_the_package_not_each_other_or_the_tests(path):
    """Scripts are thin callers of the vasa package: what two of them share lives in the package."""
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    tests = {p.stem for p in TESTS.glob("*.py")}
    assert not script_shortcuts(path.read_text(), scripts, tests)
