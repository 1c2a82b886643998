"""The package's layers, read from its source: models never import each other, the core never imports a
model, and every module the package and ``unsuplab.models`` document is there.

Layers, bottom up: the core (``data``, ``train``, ``metrics``, ``viz``, ``checks``, ``runtime``,
``wordvectors``) that every chapter uses; the models (``unsuplab/models/*.py``, one family per file, built
on the core only); and the tools that run and measure the labs (``labs``, ``bench``, ``claims``,
``cost``, ``workloads``), which may use anything. Every import counts, also one written inside a function:
a lazy import is still a dependency.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import unsuplab

PACKAGE = Path(unsuplab.__file__).resolve().parent
CORE = {"data", "train", "metrics", "viz", "checks", "runtime", "wordvectors"}
TOOLS = {"labs", "bench", "claims", "cost", "workloads"}
MODELS = {p.stem for p in (PACKAGE / "models").glob("*.py") if p.stem != "__init__"}


def imported(path: Path, package: str) -> set[str]:
    """The unsuplab modules a file imports, as dotted names relative to unsuplab ('train', 'models.gan')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}   # `from . import metrics` names a module
    known = {f"unsuplab.{m}" for m in CORE | TOOLS} | {f"unsuplab.models.{m}" for m in MODELS} | {"unsuplab.models"}
    return {n[len("unsuplab."):] for n in names if n in known}


def test_the_layers_are_complete():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert modules == CORE | TOOLS, f"a module is in no layer of this test: {sorted(modules ^ (CORE | TOOLS))}"
    assert set(unsuplab._SUBMODULES) == CORE | TOOLS | {"models"}
    documented = (PACKAGE / "models" / "__init__.py").read_text()
    assert all(f"``{m}``" in documented for m in MODELS), "unsuplab/models/__init__.py does not list every model"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_model_imports_no_other_model(model):
    others = {m for m in imported(PACKAGE / "models" / f"{model}.py", "unsuplab.models") if m.startswith("models")}
    assert not others, f"models/{model}.py imports {sorted(others)}: a job two models share belongs in the core"


@pytest.mark.parametrize("module", sorted(CORE))
def test_the_core_imports_no_model_and_no_tool(module):
    bad = {m for m in imported(PACKAGE / f"{module}.py", "unsuplab") if m.startswith("models") or m in TOOLS}
    allowed = {"cost"} if module == "runtime" else set()     # setup() prints the cost model's estimate
    assert not bad - allowed, f"{module}.py imports {sorted(bad - allowed)}"


@pytest.mark.parametrize("name", sorted(CORE | TOOLS) + [f"models.{m}" for m in sorted(MODELS)])
def test_every_module_declares_its_public_names(name):
    # __all__ in every module, holding every public function and class defined there: the API page
    # (autodoc follows __all__) then shows all of them, and `from module import *` gives what the page shows
    module = importlib.import_module(f"unsuplab.{name}")
    assert hasattr(module, "__all__"), f"unsuplab/{name.replace('.', '/')}.py has no __all__"
    defined = {n for n, obj in vars(module).items() if not n.startswith("_")
               and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__}
    assert not defined - set(module.__all__), f"{name}: public but not in __all__: {sorted(defined - set(module.__all__))}"
    assert all(hasattr(module, n) for n in module.__all__), f"{name}: __all__ names something that is not there"


def test_models_lists_every_model():
    import unsuplab.models

    assert set(unsuplab.models.__all__) == MODELS


def test_every_module_imports_on_its_own():
    for name in sorted(CORE | TOOLS) + [f"models.{m}" for m in sorted(MODELS)]:
        importlib.import_module(f"unsuplab.{name}")


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from ..train import fit\nfrom .. import metrics\ndef f():\n    from .gan import generate\n")
    assert imported(source, "unsuplab.models") == {"train", "metrics", "models.gan"}
