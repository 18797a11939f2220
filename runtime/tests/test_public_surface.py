"""The runtime's public surface is what its README documents; every other module says it is
internal, so that nobody builds on it by accident."""

from __future__ import annotations

import re
from pathlib import Path

import shoestring_runtime

PACKAGE = Path(shoestring_runtime.__file__).resolve().parent
README = PACKAGE.parent / "README.md"
PUBLIC_MODULES = {"__init__.py", "testing.py", "contract.py"}
MARK = "# Internal: a service uses what shoestring_runtime exports (README.md); this may change.\n"


def test_every_name_the_package_exports_is_documented_in_the_readme():
    documented = set(re.findall(r"`(\w+)", README.read_text(encoding="utf-8")))
    assert sorted(set(shoestring_runtime.__all__) - documented) == []


def test_every_other_module_says_it_is_internal_in_its_first_line():
    unmarked = [
        path.name
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name not in PUBLIC_MODULES
        and not path.read_text(encoding="utf-8").startswith(MARK)
    ]
    assert unmarked == [], f"start each with {MARK!r} (or document it as public in README.md)"
