"""The core knows nothing of the Celery bridge, not even its name: outside
``coda/compat/`` no source file names ``coda.compat`` (the import contract
checks imports; this checks strings, docstrings and comments too, where a
name would still tie the core to the bridge's layout)."""

from __future__ import annotations

from pathlib import Path

CODA = Path(__file__).resolve().parents[2] / "coda"


def test_no_module_outside_the_bridge_names_it() -> None:
    naming = [
        f"{path.relative_to(CODA.parent)}:{number}"
        for path in sorted(CODA.rglob("*.py"))
        if CODA / "compat" not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "coda.compat" in line
    ]
    assert naming == []
