"""The install files agree with each other and the README's first screen keeps its promise."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.helpers import REPO


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s;]+)", requirement.strip())
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


def test_environment_yml_mirrors_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:20])
    commands = re.findall(r"^make \w+", first_screen, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
