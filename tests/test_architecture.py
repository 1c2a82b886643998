"""The package's layers, read from its source: models never import each other, the core never imports a
model, and every module the package and ``unsuplab.models`` document is there.

Layers, bottom up: the core (``data``, ``train``, ``metrics``, ``viz``, ``checks``, ``runtime``,
``wordvectors``) that every chapter uses; the models (``unsuplab/models/*.py``, one family per file, built
on the core only); and the tools that run and measure the labs (``labs``, ``bench``, ``claims``,
``cost``, ``workloads``), which may use anything. Every import counts, also one written inside a function:
a lazy import is still a dependency.

``data`` is a package of three core modules: ``data.store`` (the registry of files, the mirror, the cache,
``fetch``) at the bottom, and the loaders ``data.images`` and ``data.text`` on top of it, which import the
store and not each other.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import unsuplab

PACKAGE = Path(unsuplab.__file__).resolve().parent
CORE = {"data", "data.store", "data.images", "data.text", "train", "metrics", "viz", "checks", "runtime",
        "wordvectors"}
TOOLS = {"labs", "bench", "claims", "cost", "workloads"}
MODELS = {p.stem for p in (PACKAGE / "models").glob("*.py") if p.stem != "__init__"}
# Inside the data package: what each module may import of it.
DATA_LAYERS = {"data.store": set(), "data.images": {"data.store"}, "data.text": {"data.store"}}


def source(name: str) -> tuple[Path, str]:
    """The file of a module named relative to unsuplab ('train', 'data', 'data.store') and the package its
    relative imports start from."""
    path = PACKAGE.joinpath(*name.split("."))
    if path.is_dir():
        return path / "__init__.py", f"unsuplab.{name}"
    return path.with_suffix(".py"), ".".join(["unsuplab", *name.split(".")[:-1]])


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
    for init in PACKAGE.glob("*/__init__.py"):   # a package of the core or the tools, and its modules
        if init.parent.name not in ("models", "scripts"):
            modules |= {init.parent.name} | {f"{init.parent.name}.{p.stem}" for p in init.parent.glob("*.py")
                                             if p.stem != "__init__"}
    assert modules == CORE | TOOLS, f"a module is in no layer of this test: {sorted(modules ^ (CORE | TOOLS))}"
    assert set(unsuplab._SUBMODULES) == {m.split(".")[0] for m in CORE | TOOLS} | {"models"}
    documented = (PACKAGE / "models" / "__init__.py").read_text()
    assert all(f"``{m}``" in documented for m in MODELS), "unsuplab/models/__init__.py does not list every model"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_model_imports_no_other_model(model):
    others = {m for m in imported(PACKAGE / "models" / f"{model}.py", "unsuplab.models") if m.startswith("models")}
    assert not others, f"models/{model}.py imports {sorted(others)}: a job two models share belongs in the core"


@pytest.mark.parametrize("module", sorted(CORE))
def test_the_core_imports_no_model_and_no_tool(module):
    bad = {m for m in imported(*source(module)) if m.startswith("models") or m in TOOLS}
    allowed = {"cost"} if module == "runtime" else set()     # setup() prints the cost model's estimate
    assert not bad - allowed, f"{source(module)[0].relative_to(PACKAGE)} imports {sorted(bad - allowed)}"


@pytest.mark.parametrize("module", sorted(DATA_LAYERS))
def test_the_data_store_is_below_the_loaders(module):
    inside = {m for m in imported(*source(module)) if m.startswith("data.")}
    extra = sorted(inside - DATA_LAYERS[module])
    assert not extra, (f"{source(module)[0].relative_to(PACKAGE)} imports {extra}: the store knows no loader, "
                       "and the image and text loaders share only the store")


@pytest.mark.parametrize("name", sorted(CORE | TOOLS) + [f"models.{m}" for m in sorted(MODELS)])
def test_every_module_declares_its_public_names(name):
    # __all__ in every module, holding every public function and class defined there: the API page
    # (autodoc follows __all__) then shows all of them, and `from module import *` gives what the page shows
    module = importlib.import_module(f"unsuplab.{name}")
    assert hasattr(module, "__all__"), f"unsuplab/{source(name)[0].relative_to(PACKAGE)} has no __all__"
    defined = {n for n, obj in vars(module).items() if not n.startswith("_")
               and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__}
    assert not defined - set(module.__all__), f"{name}: public but not in __all__: {sorted(defined - set(module.__all__))}"
    assert all(hasattr(module, n) for n in module.__all__), f"{name}: __all__ names something that is not there"


@pytest.mark.parametrize("name", sorted(m for m in CORE | TOOLS if "." in m))
def test_a_package_gives_every_public_name_of_its_modules(name):
    # ul.data.mnist, not ul.data.images.mnist: the labs, and the API page, use the package's names
    package, module = importlib.import_module(f"unsuplab.{name.split('.')[0]}"), importlib.import_module(f"unsuplab.{name}")
    missing = sorted(set(module.__all__) - set(package.__all__))
    assert not missing, f"{package.__name__}.__all__ lacks {missing} of {module.__name__}"
    assert all(getattr(package, n) is getattr(module, n) for n in module.__all__)


def test_models_lists_every_model():
    import unsuplab.models

    assert set(unsuplab.models.__all__) == MODELS


def test_every_module_imports_on_its_own():
    for name in sorted(CORE | TOOLS) + [f"models.{m}" for m in sorted(MODELS)]:
        importlib.import_module(f"unsuplab.{name}")


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    file = tmp_path / "x.py"
    file.write_text("from ..train import fit\nfrom .. import metrics\ndef f():\n    from .gan import generate\n")
    assert imported(file, "unsuplab.models") == {"train", "metrics", "models.gan"}
    file.write_text("from .store import fetch\nfrom . import text\n")   # inside the data package
    assert imported(file, "unsuplab.data") == {"data", "data.store", "data.text"}
