"""The chassis' docstrings and comments name its migration files; each name must exist, so a
reader who follows one finds the table it describes."""

from __future__ import annotations

import re

from support import RUNTIME

MIGRATION_FILE = re.compile(r"\b(\d{4}_[a-z0-9_]+\.sql)\b")
# migrate.py explains the naming of the user's own migrations with made-up examples.
EXAMPLES_OF_USER_FILES = {"migrate.py"}


def test_every_migration_file_the_chassis_names_exists() -> None:
    existing = {path.name for path in (RUNTIME / "migrations").glob("*/*.sql")}
    named = {
        (module.name, name)
        for module in RUNTIME.glob("*.py")
        if module.name not in EXAMPLES_OF_USER_FILES
        for name in MIGRATION_FILE.findall(module.read_text(encoding="utf-8"))
    }
    assert named, "the chassis names its migrations somewhere"
    assert sorted(ref for ref in named if ref[1] not in existing) == []
