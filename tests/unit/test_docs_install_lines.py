"""Every install line in the docs installs this project under its own
distribution name, ``coda-workflows``, with extras the package declares:
``coda`` on the package index is an unrelated project (issue 12.1)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "migration_guide.md", *sorted(ROOT.glob("examples/**/*.md"))]
DISTRIBUTION = re.compile(r"^(coda-workflows|\.|-e|\.\[[a-z,]+\])(\[(?P<extras>[a-z,]+)\])?$")


def install_targets() -> list[tuple[str, str]]:
    """(where, what) for each argument of each ``pip install`` in the docs
    that names this project (local paths and options included)."""
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in re.finditer(r"pip install ([^`#&|;]+)", line):
                for word in shlex.split(match.group(1)):
                    if word.startswith("coda") or word.startswith("."):
                        found.append((f"{doc.name}:{number}", word))
    return found


def declared_extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "coda-workflows"
    return set(project["optional-dependencies"])


def test_every_install_line_names_coda_workflows_and_declared_extras() -> None:
    targets = install_targets()
    assert len(targets) >= 6  # the README's and the guide's, at least
    extras = declared_extras()
    for where, word in targets:
        match = DISTRIBUTION.match(word)
        assert match is not None, f"{where}: {word!r} is not coda-workflows"
        named = re.findall(r"\[([a-z,]+)\]", word)
        for group in named:
            unknown = set(group.split(",")) - extras
            assert not unknown, f"{where}: {word!r} names extras {unknown} the package lacks"
