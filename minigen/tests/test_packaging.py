"""The project's set-up files agree with each other."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]

# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"torch": "pytorch"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement_name(r) for r in project["dependencies"]}
    names |= {requirement_name(r) for r in project["optional-dependencies"]["dev"] if not r.startswith("minigen")}
    return {CONDA_NAMES.get(name, name) for name in names}


def environment_requirements() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        item = re.match(r"\s*-\s+(.+)", line)
        if item and not item.group(1).startswith(("-e", "pip", "python")):
            names.add(requirement_name(item.group(1)))
    return names


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_readme_holds_the_two_setup_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up\s+```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    ci_commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in block:
        assert command in ci_commands, f"README command {command!r} is not what .ci/run runs"
