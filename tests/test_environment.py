"""environment.yml and pyproject.toml must describe the same course environment."""

import re
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
