"""The three layers: core (``convnext_common``) <- twins (``convnext_pt``, ``convnext_tf``) <- application
(``convnext_app``), and beside the core the twins' shared torch helpers (``convnext_torch_kernels``:
torch only, no package of this project; the Keras twin imports it only on the torch backend).

The core names no framework and no twin anywhere: no import at any depth (not even inside a
function), and no framework or twin module name handed to importlib as a string. The twins never
import the application. Checked on the source text (ast), so a lazy import cannot hide, and at run
time in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "tf_keras", "flax")
TWINS = ("convnext_pt", "convnext_tf", "convnext_keras")  # convnext_keras: convnext_tf without the "TF" prefix
APP = ("convnext_app",)
TORCH_KERNELS = ("convnext_torch_kernels",)  # the torch guard and kernel both twins use


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


#: calls that import the module named by their first argument
IMPORTERS = {"import_module", "__import__", "find_spec", "run_module", "require", "import_optional"}


def _called_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _named_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module name) for every import statement at any depth, every string handed to
    an importer (``importlib.import_module("torch")``) and every entry-point string
    (``"convnext_pt.export:run"``). Names that are data in a file format (the pickle globals of a
    torch checkpoint, a config key such as ``torch_dtype``, the source label ``"keras"``) are not
    imports and are not matched."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and _called_name(node) in IMPORTERS:
            found += [(node.lineno, a.value.split(".")[0]) for a in node.args[:1]
                      if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if text and " " not in text and ":" in text and "/" not in text:
                found.append((node.lineno, text.split(":")[0].split(".")[0]))
    return found


def _violations(package: str, forbidden: tuple[str, ...], allow: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in _modules(package):
        rel = path.relative_to(REPO).as_posix()
        if rel in allow:
            continue
        bad += [f"{rel}:{line}: names {name}" for line, name in _named_modules(path) if name in forbidden]
    return bad


def test_core_names_no_framework_twin_or_application():
    # convnext_common/__main__.py is the one exception: `python -m convnext_common` hands over to the
    # application (it names the application, never a framework or a twin)
    bad = _violations("convnext_common", FRAMEWORKS + TWINS + TORCH_KERNELS)
    bad += _violations("convnext_common", APP, allow=("convnext_common/__main__.py",))
    assert not bad, "the core must not name a framework, a twin or the application:\n" + "\n".join(bad)


@pytest.mark.parametrize("twin", TWINS)
def test_twins_do_not_use_the_application(twin):
    bad = _violations(twin, APP)
    assert not bad, f"{twin} must not name the application:\n" + "\n".join(bad)


def test_twins_do_not_use_each_other():
    bad = _violations("convnext_pt", ("convnext_tf", "convnext_keras")) + _violations("convnext_tf", ("convnext_pt",))
    bad += _violations("convnext_keras", ("convnext_pt",))
    assert not bad, "\n".join(bad)


def test_importing_the_core_loads_no_framework():
    """Every core module imported in a fresh interpreter leaves torch, TensorFlow, Keras, JAX and the
    twins unloaded (the ast check above, confirmed at run time)."""
    names = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in _modules("convnext_common")]
    names = [n[: -len(".__init__")] if n.endswith(".__init__") else n for n in names if not n.endswith("__main__")]
    code = ("import sys, importlib\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            f"loaded = sorted({{m.split('.')[0] for m in sys.modules}}\n"
            f"                & set({FRAMEWORKS + TWINS + APP + TORCH_KERNELS!r}))\n"
            "print(','.join(loaded))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing the core loaded: {proc.stdout.strip()}"


def _app_imports(path: Path) -> list[tuple[int, str]]:
    """(line, full dotted name) of every import in an application module, relative ones resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_the_application_below_the_command_line_does_not_import_it():
    """The command line (cli.py, commands/) sits on top: the modules it runs take their shared helpers
    from below (convnext_app.errors, convnext_app.argtypes), never from it."""
    cli = ("convnext_app.cli", "convnext_app.commands")
    bad = []
    for path in _modules("convnext_app"):
        rel = path.relative_to(REPO).as_posix()
        if rel in ("convnext_app/cli.py", "convnext_app/__main__.py") or rel.startswith("convnext_app/commands/"):
            continue
        bad += [f"{rel}:{line}: imports {name}" for line, name in _app_imports(path)
                if any(name == c or name.startswith(c + ".") for c in cli)]
    assert not bad, "\n".join(bad)


def test_the_training_parts_keep_to_their_framework():
    """training/common names no framework (both paths import it); training/keras names no torch."""
    bad = _violations("convnext_app/training/common", FRAMEWORKS + TWINS)
    bad += _violations("convnext_app/training/keras", ("torch", "convnext_pt"))
    assert not bad, "\n".join(bad)


def test_the_torch_kernels_name_torch_only():
    """The shared torch helpers import torch and nothing of this project, so both twins may use them."""
    bad = _violations("convnext_torch_kernels", tuple(f for f in FRAMEWORKS if f != "torch") + TWINS + APP
                      + ("convnext_common",))
    assert not bad, "\n".join(bad)


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if node.level == 0 else []


def test_the_keras_twin_imports_the_torch_kernels_only_on_the_torch_backend():
    """convnext_tf names convnext_torch_kernels only under ``if keras.backend.backend() == "torch":``
    (or inside a function): on TensorFlow and JAX importing the Keras twin imports no torch."""
    bad = []
    for path in _modules("convnext_tf"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:  # module level: only inside the torch-backend test
            test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
            guarded = "torch" in test and "backend" in test
            if guarded or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            names = [n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
                     and any(imported.startswith("convnext_torch_kernels") for imported in _imported_names(n))]
            bad += [f"{path.relative_to(REPO).as_posix()}:{line}: imports convnext_torch_kernels unguarded"
                    for line in names]
    assert not bad, "\n".join(bad)
