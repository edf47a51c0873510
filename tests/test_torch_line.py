"""The torch line: the store, the concept algorithms and the app load no torch, and import nothing of the inputs or
the compute, so that a web worker never starts torch and the algorithms stay usable alone; and the product never
imports its test helpers."""
import ast
import subprocess
import sys
from pathlib import Path

import neurocarto

PACKAGE = Path(neurocarto.__file__).parent
TORCH_FREE = ("store", "concepts", "ui")
TORCH_SIDE = ("neurocarto.inputs", "neurocarto.compute")


def modules_of(package: str) -> list[str]:
    return sorted(".".join(("neurocarto", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                  for path in (PACKAGE / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module (and imported name) a file of the package imports, at its top or inside a function."""
    return imports_of(path.read_text(), ".".join(("neurocarto", *path.relative_to(PACKAGE).parent.parts)))


def imports_of(source: str, package: str) -> set[str]:
    """The modules and `module.name`s `source`, a module of `package`, imports; relative imports made absolute."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_torch_free_module_imports_the_inputs_or_the_compute():
    crossing = {str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if m.startswith(TORCH_SIDE))
                for package in TORCH_FREE for path in (PACKAGE / package).rglob("*.py")}
    assert not {path: found for path, found in crossing.items() if found}


def test_importing_every_torch_free_module_loads_no_torch():
    modules = ["neurocarto"] + [m for package in TORCH_FREE for m in modules_of(package)]
    check = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             "    loaded = sorted({'torch', 'torchvision', 'timm'} & set(sys.modules))\n"
             "    if loaded:\n"
             "        sys.exit(f'{name} loads {loaded}')\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) > 20


def test_the_import_check_sees_relative_and_function_local_imports():
    source = "import torch\nfrom ..compute import stages\n\ndef later():\n    from .figures import x\n"
    assert imports_of(source, "neurocarto.ui") == {
        "torch", "neurocarto.compute", "neurocarto.compute.stages", "neurocarto.ui.figures",
        "neurocarto.ui.figures.x"}
    assert "neurocarto.ui.graph_view" in imported_modules(PACKAGE / "ui" / "callbacks.py")


def test_the_product_never_imports_the_test_helpers():
    importing = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if "testing" not in path.parts
                 and any(m.startswith("neurocarto.testing") for m in imported_modules(path))]
    assert not importing


def test_no_package_shadows_a_public_name():
    import importlib
    import types

    for path in PACKAGE.rglob("__init__.py"):
        importlib.import_module(".".join(("neurocarto", *path.relative_to(PACKAGE).parent.parts)))
    assert not [name for name in neurocarto.__all__ if isinstance(getattr(neurocarto, name), types.ModuleType)]
