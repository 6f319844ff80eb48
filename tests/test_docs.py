"""Docs stay true: every `make` target, module, option and link named in README.md and docs/*.md exists.

The options are checked against the command lines' own ``--help``, read once for the whole module: one process per
task (the task's subcommands, and the study runners that take its options), both started together.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
TASKS = ("lesion_cls", "volume_seg")
SUBCOMMANDS = ("fit", "validate", "test", "predict", "check")
STUDIES = ("common.studies.sweep", "common.studies.cv")
"""Study runners whose options are checked too (``cv`` also passes the task's ``fit`` options through)."""
CONFIG_GROUPS = ("data", "model", "trainer", "run", "outputs")
_MARKER = "=== medlit-help: "
# run in a fresh process: prints every requested `--help` after a marker line (imports shared, so ~1 s per help)
_HELP_SCRIPT = f"""
import runpy, sys
for call in sys.argv[1:]:
    module, *args = call.split()
    print({_MARKER!r} + call, flush=True)
    sys.argv = [module, *args, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    sys.stdout.flush()
"""


# --- what the docs say ------------------------------------------------------------------------------------------
def _code_texts(text: str) -> Iterator[str]:
    """Each fenced block (continuation lines joined, comments dropped) and each inline code span of a page."""
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
    for block in fenced.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            yield re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
    yield from re.findall(r"`([^`\n]+)`", fenced.sub("", text))


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an apostrophe or an unbalanced quote in prose
        return command.split()


def _commands() -> Iterator[tuple[str, list[str]]]:
    """``(page, tokens)`` of every shell command in the docs' code (split at ``&&``, ``;`` and ``|``)."""
    for page in DOCS:
        for code in _code_texts(page.read_text()):
            for command in re.split(r"&&|;|\|", code):
                tokens = _tokens(command)
                if tokens:
                    yield page.relative_to(REPO).as_posix(), tokens


def _module_calls() -> list[tuple[str, str, list[str]]]:
    """``(page, module, arguments)`` for every ``python -m <module> ...`` (and ``torchrun ... -m <module> ...``)."""
    calls = []
    for page, tokens in _commands():
        for i, token in enumerate(tokens[1:], 1):
            launcher = re.search(r"python3?$", tokens[i - 1].strip("\"'")) or "torchrun" in tokens[:i]
            if token == "-m" and launcher and i + 1 < len(tokens) and re.fullmatch(r"[A-Za-z_][\w.]*", tokens[i + 1]):
                calls.append((page, tokens[i + 1], tokens[i + 2 :]))
                break
    return calls


def _make_calls() -> list[tuple[str, str, dict[str, str]]]:
    """``(page, target, {VARIABLE: value})`` for every ``make <target> [VAR=value ...]``."""
    calls = []
    for page, tokens in _commands():
        for i, token in enumerate(tokens[:-1]):
            if token == "make" and re.fullmatch(r"[a-z][\w-]*", tokens[i + 1]):
                variables = dict(t.split("=", 1) for t in tokens[i + 2 :] if re.fullmatch(r"[A-Z_]+=.*", t, re.DOTALL))
                calls.append((page, tokens[i + 1], variables))
    return calls


def _options(arguments: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in arguments if re.match(r"--[A-Za-z]", a)]


# --- what exists ------------------------------------------------------------------------------------------------
def _makefile() -> tuple[dict[str, str], dict[str, str]]:
    """The Makefile's rules (target -> its line and recipe) and variables (name -> definition)."""
    rules: dict[str, str] = {}
    variables: dict[str, str] = {}
    lines = (REPO / "Makefile").read_text().splitlines()
    current = None
    for i, line in enumerate(lines):
        if line.startswith("define "):
            name = line.split()[1]
            end = lines.index("endef", i)
            variables[name] = "\n".join(lines[i + 1 : end])
        assignment = re.match(r"([A-Z_]+)\s*[:?]?=\s*(.*)", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
        rule = re.match(r"^([\w-]+):(?!=)(.*)", line)
        if rule:
            current = rule.group(1)
            rules[current] = rule.group(2)
        elif current and line.startswith("\t"):
            rules[current] += "\n" + line
        elif not line.startswith("\t"):
            current = None
    return rules, variables


def _expanded(text: str, variables: dict[str, str]) -> str:
    """``text`` followed by the definitions of the Makefile variables and macros it uses, and of those they use."""
    seen: set[str] = set()
    while True:
        names = {n for n in re.findall(r"\$\((?:call )?(\w+)", text) if n in variables} - seen
        if not names:
            return text
        text += "".join(f"\n{variables[n]}" for n in sorted(names))
        seen |= names


def _help_options(text: str) -> set[str]:
    """The options an argparse/jsonargparse help defines (on the lines that start with a dash)."""
    options = set()
    for line in text.splitlines():
        if line.lstrip().startswith("-"):
            options.update(o.rstrip("+") for o in re.findall(r"(?<![\w-])--[A-Za-z][\w.-]*\+?", line))
    return options


@pytest.fixture(scope="module")
def helps() -> dict[str, set[str]]:
    """The options of each ``"<module> [subcommand]"``: every task subcommand and the study runners."""
    groups = [[task, *(f"{task} {s}" for s in SUBCOMMANDS)] for task in TASKS]
    groups[0] += STUDIES
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _HELP_SCRIPT, *calls], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for calls in groups
    ]
    options: dict[str, set[str]] = {}
    for process in processes:
        output, _ = process.communicate(timeout=300)
        for chunk in output.split(_MARKER)[1:]:
            call, _, text = chunk.partition("\n")
            options[call] = _help_options(text)
    assert all(options.get(call) for calls in groups for call in calls), f"a --help printed nothing: {options}"
    return options


# --- the tests --------------------------------------------------------------------------------------------------
def test_the_docs_name_commands_at_all() -> None:
    assert any(module == "lesion_cls" for _, module, _ in _module_calls())
    assert any(module == "volume_seg" for _, module, _ in _module_calls())
    assert {"demo", "test"} <= {target for _, target, _ in _make_calls()}


def test_every_make_target_and_variable_exists() -> None:
    rules, variables = _makefile()
    wrong = []
    for page, target, given in _make_calls():
        if target not in rules:
            wrong.append(f"{page}: make {target}: no such target")
            continue
        recipe = _expanded(rules[target], variables)
        wrong += [
            f"{page}: make {target} {name}=: the target ignores {name}" for name in given if f"$({name})" not in recipe
        ]
    assert not wrong, "\n".join(wrong)


def test_every_module_exists() -> None:
    missing = sorted({f"{page}: python -m {module}" for page, module, _ in _module_calls() if not _finds(module)})
    assert not missing, "\n".join(missing)


def _finds(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_every_option_of_a_command_exists(helps: dict[str, set[str]]) -> None:
    rules, variables = _makefile()
    wrong = []
    for page, module, arguments in _module_calls():
        if module in TASKS:
            call = f"{module} {arguments[0]}" if arguments and arguments[0] in SUBCOMMANDS else module
            known = helps[call]
        elif module in STUDIES:
            known = helps[module]
            if module == "common.studies.cv" and arguments and arguments[0] in TASKS:
                known = known | helps[f"{arguments[0]} fit"]
        else:
            continue
        wrong += [f"{page}: python -m {module}: {o}" for o in _options(arguments) if o not in known]
    for page, target, given in _make_calls():
        recipe = _expanded(rules.get(target, ""), variables)
        task = re.search(r"-m (lesion_cls|volume_seg)\b", recipe)
        if "ARGS" in given and task:
            known = helps[f"{task.group(1)} fit"]
            wrong += [f"{page}: make {target} ARGS=: {o}" for o in _options(given["ARGS"].split()) if o not in known]
    assert not wrong, "options not in the command's --help:\n" + "\n".join(wrong)


def test_every_config_option_named_in_prose_exists(helps: dict[str, set[str]]) -> None:
    """``--data.*``, ``--model.*``, ... anywhere in the docs: an option of at least one task command."""
    known = set().union(*(options for call, options in helps.items() if call.split()[0] in TASKS))
    pattern = re.compile(rf"(?<![\w-])--(?:{'|'.join(CONFIG_GROUPS)})\.[A-Za-z_][\w.]*")
    wrong = [
        f"{page.relative_to(REPO)}: {option}"
        for page in DOCS
        for option in sorted(set(pattern.findall(page.read_text())))
        if option.rstrip(".") not in known
    ]
    assert not wrong, "\n".join(wrong)


def test_every_relative_link_points_to_a_file() -> None:
    broken = []
    for page in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "\n".join(broken)


def test_no_reference_to_numbered_issues() -> None:
    found = [
        f"{page.relative_to(REPO)}: {match.group(0)}"
        for page in DOCS
        for match in re.finditer(r"\b(?:issues?\s+#?\d+|work items?)\b", page.read_text(), flags=re.IGNORECASE)
    ]
    assert not found, "\n".join(found)


def test_the_docs_test_reads_every_page() -> None:
    assert Path(REPO / "README.md") in DOCS
    assert {"data.md", "training.md", "predict.md", "outputs.md"} <= {p.name for p in DOCS}


def test_the_readmes_result_numbers_are_all_generated_from_records() -> None:
    """A result (a number with three decimals, as the tables write metrics) appears in README.md only inside the
    block that ``python -m common.studies.results tables`` writes from the records, which
    ``tests/studies/test_records.py`` checks against them: no result is typed by hand."""
    from common.studies.results import README_MARKERS

    text = (REPO / "README.md").read_text()
    start, end = (text.index(marker) for marker in README_MARKERS)
    outside = text[:start] + text[end:]
    assert re.findall(r"\b\d+\.\d{3}\b", text[start:end]), "the generated block holds the records' numbers"
    assert re.findall(r"(?<!Python )\b\d+\.\d{2,}\b", outside) == []  # a version is not a result


def test_a_docs_line_that_cites_a_record_types_only_that_records_numbers() -> None:
    """A line of ``docs/`` (``results.md`` is generated) that names a record (``<benchmark>/<name>``) holds no result
    number (three decimals) other than the record's own metrics and interval ends: differences between records are
    the generated standing comparisons, not typed."""
    from common.studies.records import find_records

    records = find_records(REPO / "results")
    assert records, "the committed records"
    for page in DOCS[1:]:
        if page.name == "results.md":
            continue
        for number, line in enumerate(page.read_text().splitlines(), 1):
            cited = [r for r in records if re.search(rf"(?<![\w.-]){re.escape(r.label)}(?![\w/-])", line)]
            if not cited:
                continue
            allowed = {
                f"{v:.3f}"
                for r in cited
                for entry in r.info["metrics"].values()
                for v in [entry.get("value"), *(entry.get("ci95") or [])]
                if isinstance(v, float)
            }
            typed = set(re.findall(r"\b\d+\.\d{3}\b", line)) - allowed
            assert not typed, f"{page.name}:{number} cites {cited[0].label} but types {sorted(typed)}"
