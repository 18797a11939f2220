"""Ships the Copier template inside the `shoestring` package.

The template (copier.yml and template/) lives at the repository's root, where Copier and the
examples read it from a checkout. A wheel carries a copy of both as `shoestring/_template/`, so
`shoestring new` works wherever shoestring is installed (generator/shoestring/new.py looks there
when it does not run from a checkout). An editable install reads the checkout itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Caches of tools run in a checkout are never part of the template.
NOT_TEMPLATE = ("__pycache__", "*.py[cod]", ".pytest_cache", ".ruff_cache", ".mypy_cache")


class BuildPyWithTemplate(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "shoestring" / "_template"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy2(ROOT / "copier.yml", target / "copier.yml")
        shutil.copytree(
            ROOT / "template", target / "template", ignore=shutil.ignore_patterns(*NOT_TEMPLATE)
        )


setup(cmdclass={"build_py": BuildPyWithTemplate})
