"""environment.yml and pyproject.toml must describe the same course environment; the package's own
dependencies are what the labs import, with floors that match the APIs the code uses."""

import ast
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def env_pip_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml should have exactly one pip: section"
    return env, [Requirement(r) for r in pip_lists[0] if not r.startswith("-e")]


def extra(name):
    return {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["optional-dependencies"][name]}


def expected_requirements():
    """The package's dependencies, with the `course` extra's pins taking precedence."""
    project = pyproject()["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    reqs.update({Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["course"]})
    return reqs


def test_environment_yml_matches_pyproject():
    _, env_reqs = env_pip_requirements()
    got = {r.name: str(r.specifier) for r in env_reqs}
    want = {name: str(r.specifier) for name, r in expected_requirements().items()}
    assert got == want, (
        "environment.yml and pyproject.toml disagree: "
        f"only in environment.yml {sorted(set(got) - set(want))}, only in pyproject {sorted(set(want) - set(got))}, "
        f"different {sorted(n for n in set(got) & set(want) if got[n] != want[n])}"
    )


def test_course_pins_satisfy_the_package_bounds():
    """The exact course pins must lie inside the package's loose lower bounds."""
    project = pyproject()["project"]
    loose = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    for raw in project["optional-dependencies"]["course"]:
        req = Requirement(raw)
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if req.name in loose and pins:
            assert Version(pins[0]) in loose[req.name], f"{req} is outside the package's {req.name}{loose[req.name]}"


def test_named_stack_and_python():
    env, _ = env_pip_requirements()
    assert "python=3.11" in env["dependencies"]
    course = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["optional-dependencies"]["course"]}
    assert str(course["torch"].specifier) == "==2.14.1"
    assert str(course["torchvision"].specifier) == "==0.29.1"
    jb = course["jupyter-book"].specifier
    assert Version("1.0.4") in jb and Version("2.0.0") not in jb
    deps = expected_requirements()
    for name in ("matplotlib", "ipywidgets", "jupyterlab", "nbval", "papermill"):
        assert name in deps, f"{name} is part of the named stack but not in pyproject.toml"


def test_makefile_and_ci_use_the_readme_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [l.strip() for l in ci.splitlines() if l.strip() and not l.strip().startswith(("#", "set ", "cd ", "export "))]
    assert commands == ["make test"], f".ci/run should run exactly `make test`, runs {commands}"
    assert re.search(r"UNSUPLAB_DATA_MIRROR=.*\.\./shared/data", ci)
    assert "UNSUPLAB_PROFILE=smoke" in ci


@pytest.mark.parametrize("name", ["book", "labs", "solutions", "unsuplab", "_config.yml", "_toc.yml",
                                  "environment.yml", "tests", "pyproject.toml", "README.md", "Makefile",
                                  ".ci/run", "results", "LICENSE", "LICENSE-TEXT"])
def test_top_level_layout(name):
    assert (ROOT / name).exists(), f"{name} is part of the course's required layout"


def test_extras_are_split_by_purpose_and_course_holds_them_all():
    extras = pyproject()["project"]["optional-dependencies"]
    assert set(extras) == {"book", "test", "course"}, f"extras should be book, test and course, got {sorted(extras)}"
    course = extra("course")
    for purpose in ("book", "test"):
        for name, req in extra(purpose).items():
            assert name in course, f"the course extra (what `make` installs) lacks {req} from the {purpose} extra"
            assert course[name].specifier == req.specifier, f"course says {course[name]}, {purpose} says {req}"
    assert "jupyter-book" in extra("book") and "pytest" in extra("test")
    for name in ("papermill", "nbformat", "nbval", "playwright", "ipykernel"):
        assert name in extra("test"), f"{name} is test tooling: it belongs in the test extra"
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install --quiet -e ".[course]"' in makefile, "make should still install the course extra"


def test_runtime_dependencies_are_what_the_labs_import():
    deps = {Requirement(r).name for r in pyproject()["project"]["dependencies"]}
    for tooling in ("papermill", "nbformat", "jupyter-book", "pytest", "nbval", "playwright", "jupyterlab"):
        assert tooling not in deps, f"{tooling} is tooling for the book or the tests, not a runtime dependency"
    for needed in ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "ipython", "pillow", "sacrebleu"):
        assert needed in deps, f"the labs or unsuplab import {needed}: it must be a runtime dependency"


@pytest.mark.parametrize("name, too_old, new_enough", [
    ("torch", "2.2.2", "2.3.0"),              # torch.amp.GradScaler("cuda")
    ("torchvision", "0.18.1", "0.19.0"),      # decode_jpeg on a list of images
    ("ipywidgets", "7.6.5", "7.7.1"),         # Colab ships 7.7: no forced upgrade, no restart
    ("matplotlib", "3.4.3", "3.5.0"),         # layout="constrained", matplotlib.colormaps
])
def test_floors_match_the_apis_used(name, too_old, new_enough):
    deps = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}
    assert Version(too_old) not in deps[name].specifier and Version(new_enough) in deps[name].specifier, (
        f"{deps[name]}: the floor should admit {new_enough} and refuse {too_old}")


def test_every_runtime_floor_says_why():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    for line in block.splitlines():
        if line.strip().startswith('"'):
            assert "#" in line, f"say in a comment why the floor is that version: {line.strip()}"


def lab_import_statements():
    """Every import statement of the solution notebooks' code cells (IPython magics left out)."""
    statements = set()
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "\n".join(l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0:
                    statements.add(ast.unparse(node))
    return sorted(statements)


def test_unsuplab_and_the_labs_import_without_the_tooling():
    """papermill and nbformat are imported lazily, only by the bench and labs tooling."""
    statements = lab_import_statements()
    assert any("unsuplab" in s for s in statements)
    lab_facing = ["unsuplab", "unsuplab.runtime", "unsuplab.data", "unsuplab.train", "unsuplab.metrics",
                  "unsuplab.viz", "unsuplab.checks", "unsuplab.claims", "unsuplab.bench", "unsuplab.wordvectors"]
    lab_facing += [f"unsuplab.models.{p.stem}" for p in sorted((ROOT / "unsuplab" / "models").glob("*.py"))
                   if p.stem != "__init__"]
    script = textwrap.dedent(f"""
        import importlib, sys
        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("papermill", "nbformat"):
                    raise ImportError(f"No module named {{name!r}} (hidden by the test)")
        sys.meta_path.insert(0, Missing())
        for module in {lab_facing!r}:
            importlib.import_module(module)
        for statement in {statements!r}:
            exec(statement, {{}})
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_package_version_is_the_one_the_labs_pin():
    import unsuplab

    assert pyproject()["project"]["version"] == unsuplab.__version__, (
        "pyproject.toml and unsuplab.__version__ disagree: the labs' install cells pin the tag v<__version__>")
