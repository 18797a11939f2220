"""Ships the Copier template and the runtime's sources inside the `shoestring` package.

The template (copier.yml and template/) lives at the repository's root, where Copier and the
examples read it from a checkout. A wheel carries a copy of both as `shoestring/_template/`, so
`shoestring new` works wherever shoestring is installed (generator/shoestring/new.py looks there
when it does not run from a checkout). Likewise the sources of shoestring-runtime (runtime/) go
in as `shoestring/_runtime/`, so that `--vendor-runtime` can build the wheel of the runtime this
generator ships with (generator/shoestring/vendor.py). An editable install reads the checkout
itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Caches of tools run in a checkout are never part of the template.
NOT_TEMPLATE = ("__pycache__", "*.py[cod]", ".pytest_cache", ".ruff_cache", ".mypy_cache")
# Building the runtime's wheel needs its pyproject.toml, README.md and package, never its tests
# or what earlier builds left.
NOT_RUNTIME = (*NOT_TEMPLATE, "*.egg-info", "build", "dist", "tests")


class BuildPyWithTemplate(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        package = Path(self.build_lib) / "shoestring"
        target = package / "_template"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy2(ROOT / "copier.yml", target / "copier.yml")
        shutil.copytree(
            ROOT / "template", target / "template", ignore=shutil.ignore_patterns(*NOT_TEMPLATE)
        )
        runtime = package / "_runtime"
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.copytree(ROOT / "runtime", runtime, ignore=shutil.ignore_patterns(*NOT_RUNTIME))


setup(cmdclass={"build_py": BuildPyWithTemplate})
