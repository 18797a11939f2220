"""The services the runtime's tests run on, generated from the specs in specs/.

Each is made once per test session, as `shoestring new` makes it, into a temporary folder
removed at exit, and put on sys.path so that its package imports like any service's.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

from shoestring.new import create_service
from shoestring.spec.loader import load_spec

from shoestring_runtime import Service

SPECS = Path(__file__).resolve().parent / "specs"


@functools.cache
def generated_service(name: str) -> Service:
    """The `Service` of a service generated from specs/<name>.yaml (once per session)."""
    spec_file = SPECS / f"{name}.yaml"
    result = load_spec(spec_file)
    if not result.ok:
        problems = "\n".join(problem.format() for problem in result.problems)
        raise AssertionError(f"{spec_file} is not a valid spec; fix it:\n{problems}")
    folder = Path(tempfile.mkdtemp(prefix=f"runtime-tests-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    created = create_service(spec_file, result.spec, folder / name)
    sys.path.insert(0, str(created.root))
    return importlib.import_module(created.package).SERVICE
