"""The spec format, version 1: loading `service.yaml`, checking it, and its normalised model.

`load_spec(path)` returns a `LoadResult` with `.spec` (the model of docs/internals.md §2, or None)
and `.problems` (every `Problem`, located as file:line:col, each with a hint).
"""

from .checks import converter_name, handler_name, package_name
from .examples import example_for
from .fields import FieldSpecError, compile_fields
from .loader import LoadResult, load_spec, load_spec_text
from .problems import Problem
from .structure import schema, schema_text

__all__ = [
    "FieldSpecError",
    "LoadResult",
    "Problem",
    "compile_fields",
    "converter_name",
    "example_for",
    "handler_name",
    "load_spec",
    "load_spec_text",
    "package_name",
    "schema",
    "schema_text",
]
