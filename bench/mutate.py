"""Mutation run on the core modules: mutmut per group of (modules, covering test files), one report file.

Usage (``./run mutate`` calls it; not part of the CI suite, it takes minutes per group)::

    .venv/bin/python bench/mutate.py [GROUP ...] [--report PATH] [--jobs N] [--again] [--module PATH ...] [--only NAME ...]

``--again`` keeps each group's scratch copy from the last run, brings its code and test files up to date
and re-tests the mutants that run left alive or did not reach (after tests were added for them, or to finish
a stopped run) and those of functions whose code changed since; the other results stand.
``--module PATH`` runs only that module of its group (in a scratch copy of its own), for a group too
slow to run whole on a loaded machine. ``--only NAME`` tests only the mutants named (fnmatch patterns,
e.g. ``"mailer.delivery.pool.*_connect__mutmut_5"``); the others keep the result of the last run.

Groups, their covering test files and the mutants judged equivalent are configured in ``pyproject.toml``
under ``[tool.mutmut]`` (settings shared by every group) and ``[tool.webinar-mailer.mutation]``. With no
GROUP every group runs. Each group runs in its own scratch copy of the project (``var/mutation/GROUP/``),
with a ``pyproject.toml`` whose ``[tool.mutmut]`` names only that group's modules and test files, so each
mutant is tested by the tests of those files that reach the mutated function and nothing else.

The report (default ``var/mutation/report.md``) has the score per module, killed / (all - equivalent -
not run; "not run" is 0 after a complete run),
and every surviving mutant with its diff; equivalent ones are listed apart with the reason given in the
configuration. Exits 1 if a module scores below ``min_score`` (per cent), 2 if mutmut itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("mailer", "tests", "templates", "config")
# A mutant whose tests run past mutmut's time limit (an endless loop) is caught too: the suite never passes.
KILLED = {"killed", "caught by type check", "timeout"}
NOT_RUN = "not checked"  # mutmut's status for a mutant not tested yet (a run stopped or run in parts)
# mutmut's status for a mutant whose tests did not fail, or could not tell.
SURVIVED = {"survived", "no tests", "suspicious", "segfault", "skipped"}


@dataclass(frozen=True)
class Group:
    """One mutation group: ``modules`` (paths of files mutated), ``tests`` (test files run on them) and
    ``deselect`` (test ids of those files left out: too slow to run once per mutant)."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()


def load_settings() -> tuple[dict[str, object], dict[str, Group], dict[str, str], float]:
    """The shared ``[tool.mutmut]`` table, the groups by name, the equivalent mutants (name -> reason)
    and the minimum score in per cent, from the project's ``pyproject.toml``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    shared = dict(data["tool"]["mutmut"])
    own = data["tool"]["webinar-mailer"]["mutation"]
    groups = {
        name: Group(name, tuple(spec["modules"]), tuple(spec["tests"]), tuple(spec.get("deselect", ())))
        for name, spec in own["groups"].items()
    }
    return shared, groups, dict(own.get("equivalent", {})), float(own.get("min_score", 85))


def toml_value(value: object) -> str:
    """``value`` (str, bool, number or list of them) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def prepare(group: Group, shared: dict[str, object], scratch: Path) -> None:
    """A fresh copy of the project in ``scratch`` whose mutmut configuration covers ``group`` only."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        shutil.copytree(ROOT / name, scratch / name, ignore=ignore)
    # Tests read the organisers' exports at ../shared beside the checkout; mutmut runs them in scratch/mutants.
    beside = (ROOT.parent / "shared").resolve()
    if beside.is_dir():
        (scratch / "shared").symlink_to(beside, target_is_directory=True)
    configure(group, shared, scratch)


def configure(group: Group, shared: dict[str, object], scratch: Path) -> None:
    """The ``pyproject.toml`` of ``scratch``: mutmut's settings for ``group`` and the project's pytest options."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    settings = {
        **shared,
        "only_mutate": list(group.modules),
        "pytest_add_cli_args_test_selection": list(group.tests),
        "pytest_add_cli_args": [
            *shared.get("pytest_add_cli_args", []),  # type: ignore[misc]
            *(arg for test in group.deselect for arg in ("--deselect", test)),
        ],
    }
    pytest_options = pyproject["tool"]["pytest"]["ini_options"]
    lines = ["[tool.mutmut]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    lines += ["", "[tool.pytest.ini_options]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in pytest_options.items() if key != "testpaths"]
    (scratch / "pyproject.toml").write_text("\n".join(lines) + "\n", "utf-8")


def refresh(scratch: Path) -> None:
    """The project's current files over those of ``scratch``: the code (mutmut then makes the mutants of each
    changed file again and re-tests the functions whose code changed; a copy keeps each file's time, so an
    unchanged file stays as it was) and the tests, in ``scratch`` and in mutmut's copy inside it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        shutil.copytree(ROOT / name, scratch / name, ignore=ignore, dirs_exist_ok=True)
    if (scratch / "mutants" / "tests").exists():
        shutil.copytree(ROOT / "tests", scratch / "mutants" / "tests", ignore=ignore, dirs_exist_ok=True)


def mutmut(scratch: Path, *args: str, capture: bool = False) -> str:
    """Run ``mutmut ARGS`` in ``scratch``; its output if ``capture``. Raises CalledProcessError on failure."""
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    # Property tests on a few derandomised examples (tests/conftest.py): the exact-byte tests kill the mutants.
    env = {"HYPOTHESIS_PROFILE": "mutation", **os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, cwd=scratch, env=env, check=True, text=True, capture_output=capture)
    return done.stdout if capture else ""


def statuses(scratch: Path) -> dict[str, str]:
    """Every mutant of the last run in ``scratch``, name -> mutmut status."""
    listing = mutmut(scratch, "results", "--all", "true", capture=True)
    found: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status.strip()
    return found


def module_of(mutant: str, group: Group) -> str:
    """The module path of ``mutant`` (``mailer.delivery.replies.x_classify__mutmut_3`` -> its file)."""
    dotted = mutant.split(".x")[0].split(".xǁ")[0]
    for module in group.modules:
        if module.removesuffix(".py").replace("/", ".") == dotted:
            return module
    return dotted


def report_group(group: Group, found: dict[str, str], equivalent: dict[str, str], scratch: Path) -> list[str]:
    """The report's section for ``group``: one score row per module, then the survivors with their diffs."""
    rows = [
        "| module | mutants | killed | equivalent | survived | not run | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    survivors: list[str] = []
    equivalents: list[str] = []
    for module in group.modules:
        names = sorted(name for name in found if module_of(name, group) == module)
        counts = Counter(
            "equivalent"
            if name in equivalent
            else "killed"
            if found[name] in KILLED
            else "not run"
            if found[name] == NOT_RUN
            else "survived"
            for name in names
        )
        live = len(names) - counts["equivalent"] - counts["not run"]
        score = 100.0 * counts["killed"] / live if live else 100.0
        rows.append(
            f"| {module} | {len(names)} | {counts['killed']} | {counts['equivalent']} | "
            f"{counts['survived']} | {counts['not run']} | {score:.1f}% |"
        )
        for name in names:
            if found[name] == NOT_RUN:
                continue
            if name in equivalent:
                equivalents.append(f"- `{name}`: {equivalent[name]}")
            elif found[name] not in KILLED:
                diff = mutmut(scratch, "show", name, capture=True).strip()
                survivors.append(f"#### `{name}` ({found[name]})\n\n```diff\n{diff}\n```\n")
    section = [f"## {group.name}", "", "Tests: " + ", ".join(f"`{test}`" for test in group.tests)]
    section += [f"Left out: `{test}`" for test in group.deselect] + [""]
    section += [*rows, ""]
    if equivalents:
        section += ["### Equivalent (no behaviour changes)", "", *equivalents, ""]
    section += ["### Survivors", ""] + (survivors or ["None.", ""])
    return section


def scores(found: dict[str, str], group: Group, equivalent: dict[str, str]) -> dict[str, float]:
    """Per module of ``group``: killed / (mutants - equivalent - not run), in per cent."""
    result: dict[str, float] = {}
    for module in group.modules:
        names = [
            name
            for name in found
            if module_of(name, group) == module and name not in equivalent and found[name] != NOT_RUN
        ]
        killed = sum(found[name] in KILLED for name in names)
        result[module] = 100.0 * killed / len(names) if names else 100.0
    return result


def main() -> int:
    """Run the chosen groups and write the report; the exit status as the module docstring says."""
    shared, groups, equivalent, min_score = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all of {', '.join(groups)})")
    parser.add_argument("--report", type=Path, default=ROOT / "var" / "mutation" / "report.md")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--module", action="append", default=[], help="run only this module of the chosen groups (repeatable)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="test only the mutants named (fnmatch patterns, repeatable)",
    )
    parser.add_argument(
        "--again", action="store_true", help="re-test only the last run's survivors, with the current tests"
    )
    options = parser.parse_args()
    unknown = [name for name in options.groups if name not in groups]
    if unknown:
        parser.error(f"unknown group(s): {', '.join(unknown)}")
    chosen = [groups[name] for name in options.groups] or list(groups.values())
    if options.module:
        parts = [
            Group(f"{group.name}--{Path(module).stem}", (module,), group.tests, group.deselect)
            for group in chosen
            for module in group.modules
            if module in options.module
        ]
        if not parts:
            parser.error(f"no chosen group has module(s) {', '.join(options.module)}")
        chosen = parts
    lines = ["# Mutation report", "", f"Command: `bench/mutate.py {' '.join(sys.argv[1:])}`".rstrip(), ""]
    low: list[str] = []
    for group in chosen:
        scratch = ROOT / "var" / "mutation" / group.name
        names: list[str] = []
        if options.only and (scratch / "mutants").exists():
            refresh(scratch)
            configure(group, shared, scratch)
            names = list(options.only)
        elif options.again and (scratch / "mutants").exists():
            names = [
                name
                for name, status in statuses(scratch).items()
                if status in SURVIVED and name not in equivalent
            ]
            refresh(scratch)
            configure(group, shared, scratch)
        else:
            prepare(group, shared, scratch)
        try:
            if options.only and not names:
                mutmut(scratch, "run", "--max-children", str(options.jobs), *options.only)
            elif options.again:
                # Every mutant without a result (not reached, or of a function whose code changed), then the
                # last run's survivors, which mutmut re-tests only when named.
                mutmut(scratch, "run", "--max-children", str(options.jobs))
                if names:
                    mutmut(scratch, "run", "--max-children", str(options.jobs), *names)
            else:
                mutmut(scratch, "run", "--max-children", str(options.jobs), *names)
        except subprocess.CalledProcessError as error:
            print(f"mutmut failed on group {group.name}: {error}", file=sys.stderr)
            return 2
        found = statuses(scratch)
        lines += report_group(group, found, equivalent, scratch)
        low += [
            f"{module} {score:.1f}%"
            for module, score in scores(found, group, equivalent).items()
            if score < min_score
        ]
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text("\n".join(lines) + "\n", "utf-8")
    print(f"report: {options.report}")
    if low:
        print(f"below {min_score:.0f}%: " + ", ".join(low), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
