"""A picture of a system: its services, the messages between them and the calls they make.

`flows(system)` lists what moves between services: a message edge for each subscription whose
publisher is in the system (labelled with the message and its version), a call edge for each
endpoint a service calls on a peer (`peers: {name: {calls: [...]}}`). Two renderings:

- `mermaid(system)`: a Mermaid flowchart, text that GitHub and many editors draw;
- `svg(system)`: a self-contained SVG drawn here, with no browser or graphviz: services are
  placed in layers from left to right (a layer after every service it receives from, cycles
  broken at the first edge that closes one), edges that go forward are curves between the
  layers and edges that go back curve below the boxes.

Both are deterministic: the same system gives the same bytes, so a committed picture can be
checked for staleness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

from .system import System

# Monospace text has a known width: 0.6em per character.
FONT_SIZE = 12
CHAR_WIDTH = FONT_SIZE * 0.6
LINE_HEIGHT = 16
MARGIN = 24
NODE_HEIGHT = 54
NODE_GAP_Y = 40
MIN_LAYER_GAP = 140
PAD = 14
LEGEND_WIDTH = 410
_ARC_STEP = 28  # how much further out each additional arc runs
MESSAGE_COLOUR = "#2563eb"
CALL_COLOUR = "#b45309"


@dataclass
class Edge:
    """Everything that goes from one service to another, one label line per flow."""

    source: str
    target: str
    kind: str  # "message" | "call"
    labels: list[str] = field(default_factory=list)


def flows(system: System) -> list[Edge]:
    """The message and call edges of the system, in a stable order."""
    edges: dict[tuple[str, str, str], Edge] = {}
    for name in sorted(system.services):
        service = system.services[name]
        for subscription in service.spec.get("subscriptions") or []:
            publisher = system.services.get(subscription["from"])
            if publisher is None or publisher.name == name:
                continue
            version = publisher.publishes(subscription["message"], int(subscription["version"]))
            if version is None:
                continue
            label = f"{subscription['message']} v{subscription['version']}"
            if version.get("deprecated"):
                label += " (deprecated)"
            key = (publisher.name, name, "message")
            edges.setdefault(key, Edge(publisher.name, name, "message")).labels.append(label)
        for peer, settings in sorted((service.spec.get("peers") or {}).items()):
            if peer not in system.services or not settings.get("calls"):
                continue
            edge = edges.setdefault((name, peer, "call"), Edge(name, peer, "call"))
            edge.labels += [f"calls {endpoint}" for endpoint in settings["calls"]]
    for edge in edges.values():
        edge.labels.sort()
    return [edges[key] for key in sorted(edges)]


# -- Mermaid ------------------------------------------------------------------------------------


def mermaid(system: System) -> str:
    """A Mermaid flowchart of the system (left to right)."""
    lines = ["flowchart LR"]
    for name in sorted(system.services):
        description = system.services[name].spec["service"].get("description", "")
        text = f"<b>{_mermaid_text(name)}</b>"
        if description:
            text += f"<br/><small>{_mermaid_text(_shorten(description, 48))}</small>"
        lines.append(f'    {_node_id(name)}["{text}"]')
    for edge in flows(system):
        label = "<br/>".join(_mermaid_text(text) for text in edge.labels)
        arrow = f'-- "{label}" -->' if edge.kind == "message" else f'-. "{label}" .->'
        lines.append(f"    {_node_id(edge.source)} {arrow} {_node_id(edge.target)}")
    lines.append("    classDef service fill:#f8fafc,stroke:#334155,color:#0f172a")
    if system.services:
        ids = ",".join(_node_id(name) for name in sorted(system.services))
        lines.append(f"    class {ids} service")
    return "\n".join(lines) + "\n"


def _node_id(name: str) -> str:
    return "svc_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _mermaid_text(text: str) -> str:
    # Inside a quoted Mermaid label, quotes and angle brackets must be entities.
    return escape(text, quote=True).replace("#", "#35;")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- SVG ----------------------------------------------------------------------------------------


@dataclass
class _Box:
    name: str
    title: str
    subtitle: str
    layer: int = 0
    x: float = 0
    y: float = 0
    width: float = 0

    @property
    def middle(self) -> float:
        return self.y + NODE_HEIGHT / 2


def svg(system: System) -> str:
    """The system drawn as a standalone SVG document."""
    edges = flows(system)
    boxes = {
        name: _Box(name, name, _shorten(system.services[name].spec["service"].get(
            "description", ""), 40))
        for name in sorted(system.services)
    }
    for box in boxes.values():
        box.width = max(len(box.title), len(box.subtitle)) * CHAR_WIDTH + 2 * PAD
    _assign_layers(boxes, edges)
    layers: dict[int, list[_Box]] = {}
    for box in boxes.values():
        layers.setdefault(box.layer, []).append(box)
    _order_layers(layers, edges, boxes)

    def span(edge: Edge) -> int:
        return boxes[edge.target].layer - boxes[edge.source].layer

    # Edges between neighbouring layers run straight across; longer ones arc over the boxes
    # in between, and edges back (or within a layer) arc below: the space above and between
    # the layers is sized to fit them and their labels.
    adjacent = [edge for edge in edges if span(edge) == 1]
    over = [edge for edge in edges if span(edge) > 1]
    gap = max(MIN_LAYER_GAP, max((_text_width(e.labels) for e in adjacent), default=0) + 48)
    arcs_above = [_ARC_STEP * (index + 1) + len(edge.labels) * LINE_HEIGHT
                  for index, edge in enumerate(over)]
    top = MARGIN + max(arcs_above, default=0) + (LINE_HEIGHT if over else 0)
    x = MARGIN
    for layer in sorted(layers):
        column = layers[layer]
        width = max(box.width for box in column)
        for row, box in enumerate(column):
            box.x = x + (width - box.width) / 2
            box.y = top + row * (NODE_HEIGHT + NODE_GAP_Y)
        x += width + gap
    content_width = x - gap + MARGIN
    bottom = max((box.y + NODE_HEIGHT for box in boxes.values()), default=top)

    parts = [_box(box) for box in boxes.values()]
    below = bottom
    back = 0
    for edge in edges:
        source, target = boxes[edge.source], boxes[edge.target]
        lines = len(edge.labels)
        if edge in adjacent:
            # From the right side of the source to the left side of the target; a call runs
            # below the messages of the same two services.
            shift = 8 if edge.kind == "call" else -8
            x1, y1 = source.x + source.width, source.middle + shift
            x2, y2 = target.x, target.middle + shift
            middle = (x1 + x2) / 2
            path = (f"M{_n(x1)},{_n(y1)} C{_n(middle)},{_n(y1)} {_n(middle)},{_n(y2)} "
                    f"{_n(x2)},{_n(y2)}")
            label_x = middle
            label_y = (y1 + y2) / 2 + (18 if edge.kind == "call"
                                       else -10 - (lines - 1) * LINE_HEIGHT)
        elif edge in over:
            height = arcs_above[over.index(edge)]
            x1, y1 = source.x + source.width * 0.6, source.y
            x2, y2 = target.x + target.width * 0.4, target.y
            high = min(y1, y2) - height
            path = (f"M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(high)} {_n(x2)},{_n(high)} "
                    f"{_n(x2)},{_n(y2)}")
            label_x = (x1 + x2) / 2
            label_y = min(y1, y2) - height * 0.75 - (lines - 1) * LINE_HEIGHT + 4
        else:
            back += 1
            depth = _ARC_STEP * (back + 1) + lines * LINE_HEIGHT
            x1, y1 = source.x + source.width * 0.4, source.y + NODE_HEIGHT
            x2, y2 = target.x + target.width * 0.6, target.y + NODE_HEIGHT
            low = max(y1, y2) + depth
            path = (f"M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(low)} {_n(x2)},{_n(low)} "
                    f"{_n(x2)},{_n(y2)}")
            label_x = (x1 + x2) / 2
            label_y = max(y1, y2) + depth * 0.75 + 4
            below = max(below, label_y + lines * LINE_HEIGHT)
        colour = MESSAGE_COLOUR if edge.kind == "message" else CALL_COLOUR
        dash = "" if edge.kind == "message" else ' stroke-dasharray="6 4"'
        parts.append(
            f'<path class="{edge.kind}" d="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="1.6"{dash} marker-end="url(#arrow-{edge.kind})"/>'
        )
        parts.append(_label(edge.labels, label_x, label_y, colour))

    legend_y = below + 28
    parts.append(_legend(MARGIN, legend_y))
    height = legend_y + 20
    width = max(content_width, MARGIN * 2 + LEGEND_WIDTH)
    title = escape(system.name or "system")
    return "\n".join([
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
         f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="ui-monospace, SFMono-Regular, '
         f'Menlo, Consolas, monospace" font-size="{FONT_SIZE}">'),
        f"<title>{title}: services and the messages between them</title>",
        "<defs>",
        _marker("message", MESSAGE_COLOUR),
        _marker("call", CALL_COLOUR),
        "</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        *parts,
        "</svg>",
    ]) + "\n"


def _assign_layers(boxes: dict[str, _Box], edges: list[Edge]) -> None:
    """Longest-path layering of the graph made acyclic by dropping the edges that close a cycle
    in a depth-first walk (in name order, so the result is stable)."""
    successors: dict[str, list[str]] = {name: [] for name in boxes}
    for edge in edges:
        if edge.source != edge.target and edge.target not in successors[edge.source]:
            successors[edge.source].append(edge.target)
    kept: dict[str, list[str]] = {name: [] for name in boxes}
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done

    def walk(name: str) -> None:
        state[name] = 1
        for target in sorted(successors[name]):
            if state.get(target) == 1:
                continue  # closes a cycle: drawn as a backward edge
            kept[name].append(target)
            if target not in state:
                walk(target)
        state[name] = 2

    for name in sorted(boxes):
        if name not in state:
            walk(name)
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:  # reverse post-order: a topological order of `kept`
        seen.add(name)
        for target in kept[name]:
            if target not in seen:
                visit(target)
        order.append(name)

    for name in sorted(boxes):
        if name not in seen:
            visit(name)
    for name in reversed(order):
        for target in kept[name]:
            boxes[target].layer = max(boxes[target].layer, boxes[name].layer + 1)


def _order_layers(layers: dict[int, list[_Box]], edges: list[Edge], boxes: dict[str, _Box]) -> None:
    """Within each layer, put boxes near the boxes they receive from (barycentre), then by name."""
    position: dict[str, float] = {}
    for layer in sorted(layers):
        def weight(box: _Box) -> tuple[float, str]:
            sources = [position[e.source] for e in edges
                       if e.target == box.name and e.source in position]
            return (sum(sources) / len(sources) if sources else float("inf"), box.name)

        layers[layer].sort(key=weight)
        for index, box in enumerate(layers[layer]):
            position[box.name] = index


def _text_width(lines: list[str]) -> float:
    return max((len(line) for line in lines), default=0) * CHAR_WIDTH


def _box(box: _Box) -> str:
    title_y = box.y + (22 if box.subtitle else NODE_HEIGHT / 2 + 5)
    parts = [
        (f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.width)}" height="{NODE_HEIGHT}" '
        'rx="8" fill="#f8fafc" stroke="#334155" stroke-width="1.5"/>'),
        (f'<text x="{_n(box.x + box.width / 2)}" y="{_n(title_y)}" text-anchor="middle" '
        f'font-weight="bold" fill="#0f172a">{escape(box.title)}</text>'),
    ]
    if box.subtitle:
        parts.append(
            f'<text x="{_n(box.x + box.width / 2)}" y="{_n(box.y + 40)}" text-anchor="middle" '
            f'font-size="{FONT_SIZE - 1}" fill="#475569">{escape(box.subtitle)}</text>'
        )
    return f'<g class="service" id="{_node_id(box.name)}">' + "".join(parts) + "</g>"


def _label(lines: list[str], x: float, y: float, colour: str) -> str:
    width = _text_width(lines) + 8
    height = len(lines) * LINE_HEIGHT + 4
    top = y - LINE_HEIGHT + 2
    spans = "".join(
        f'<tspan x="{_n(x)}" y="{_n(y + index * LINE_HEIGHT)}">{escape(line)}</tspan>'
        for index, line in enumerate(lines)
    )
    return (
        f'<rect x="{_n(x - width / 2)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" '
        'fill="#ffffff" opacity="0.9"/>'
        f'<text text-anchor="middle" fill="{colour}">{spans}</text>'
    )


def _marker(kind: str, colour: str) -> str:
    return (
        f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{colour}"/></marker>'
    )


def _legend(x: float, y: float) -> str:
    return (
        f'<g class="legend" font-size="{FONT_SIZE - 1}">'
        f'<line x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x + 28)}" y2="{_n(y - 4)}" '
        f'stroke="{MESSAGE_COLOUR}" stroke-width="1.6"/>'
        f'<text x="{_n(x + 34)}" y="{_n(y)}" fill="#334155">'
        "message (publisher to subscriber)</text>"
        f'<line x1="{_n(x + 300)}" y1="{_n(y - 4)}" x2="{_n(x + 328)}" y2="{_n(y - 4)}" '
        f'stroke="{CALL_COLOUR}" stroke-width="1.6" stroke-dasharray="6 4"/>'
        f'<text x="{_n(x + 334)}" y="{_n(y)}" fill="#334155">HTTP call</text></g>'
    )


def _n(value: float) -> str:
    """A coordinate with at most one decimal, without a trailing .0 (stable and short)."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")
