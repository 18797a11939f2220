"""Where a compiled field sits in the YAML it was compiled from.

Tools that compare specs (`shoestring breaking`, `shoestring check`) find things in the model,
where a field is a JSON Schema: `properties.lines.items.properties.sku`. The author wrote it in
compact form (`lines: [{sku: str}]`) or in full form (`{schema: {...}}`). `field_path` turns a
walk through the compiled schema into the path of the same field in the document, so
`document.locate` can give its line and column like every other problem of the spec.
"""

from __future__ import annotations

from .document import Node
from .fields import FULL_FORM_KEYS

#: A step into the items of a list, in the steps `field_path` takes.
ITEMS = "[]"


def field_path(
    root: Node | None,
    base: list[str | int],
    steps: list[str] | tuple[str, ...],
    keyword: str | None = None,
) -> list[str | int]:
    """The document path of the field reached by `steps` from the fields mapping at `base`.

    `steps` are property names and `ITEMS`; `keyword` (e.g. "maxLength") points inside a
    full-form schema at that keyword. Where the document has no node for a step (a list written
    as `list[str]`, say), the path stops at the nearest node that exists, which is where
    `locate` would fall back to anyway.
    """
    path: list[str | int] = list(base)
    node = _walk(root, path)
    for step in steps:
        if node is None:
            break
        inner: list[str | int]
        if _is_full_form(node):
            inner = ["schema", "properties", step] if step != ITEMS else ["schema", "items"]
        elif step == ITEMS:
            if node.kind != "seq":
                break  # `list[T]` is one scalar: the field itself is the closest position
            inner = [0]
        else:
            inner = [step]
        child = _walk(node, inner)
        if child is None:
            break
        path += inner
        node = child
    if keyword is not None and node is not None and _is_full_form(node):
        inner = ["schema", keyword]
        if _walk(node, inner) is not None:
            path += inner
    return path


def _is_full_form(node: Node) -> bool:
    schema = node.child("schema")
    return (
        node.kind == "map"
        and schema is not None
        and schema.kind == "map"
        and set(node.entries) <= FULL_FORM_KEYS
    )


def _walk(node: Node | None, steps: list[str | int]) -> Node | None:
    for step in steps:
        if node is None:
            return None
        node = node.child(step)
    return node
