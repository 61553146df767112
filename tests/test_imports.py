"""The import arrows: nothing imports training; face and motion never import each other."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vasa"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names a module imports: relative imports resolved, `from x import y` gives x and x.y."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
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
    names = imports_of(PACKAGE / "face" / "mesh.py")
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
    if path.is_relative_to(PACKAGE / "train"):  # trainers share the loop's helpers (schedule, EMA, state)
        training = {n for n in training if not within({n}, "vasa.train")}
    assert not training, f"{module_name(path)} imports {sorted(training)}"


@pytest.mark.parametrize("path", sources("face"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_face_does_not_import_motion(path):
    assert not within(imports_of(path), "vasa.motion")


@pytest.mark.parametrize("path", sources("motion"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_motion_does_not_import_face(path):
    assert not within(imports_of(path), "vasa.face")
