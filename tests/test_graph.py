"""`shoestring graph system.yaml`: the services and what moves between them, as Mermaid text
and as an SVG picture drawn without a browser or graphviz."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner
from conftest import EXAMPLES
from shoestring.cli import main
from shoestring.graph import flows, mermaid, svg
from shoestring.system import load_system

FITS = Path(__file__).parent / "systems" / "fits" / "system.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def system(path: Path = FITS):
    loaded = load_system(path)
    assert loaded.ok, [problem.format() for problem in loaded.problems]
    return loaded


def test_flows_are_the_subscriptions_and_calls_between_services() -> None:
    assert [(e.source, e.target, e.kind, e.labels) for e in flows(system())] == [
        ("orders", "payments", "call", ["calls capture_payment"]),
        ("orders", "payments", "message", ["order.created v1 (deprecated)"]),
        ("orders", "shipping", "message", ["order.created v2"]),
        ("payments", "orders", "message", ["payment.captured v1"]),
        ("payments", "shipping", "message", ["payment.captured v1"]),
    ]


def test_mermaid_draws_services_messages_and_calls() -> None:
    assert mermaid(system(EXAMPLES / "system.yaml")) == (
        "flowchart LR\n"
        '    svc_orders["<b>orders</b><br/><small>Takes and tracks customer orders.</small>"]\n'
        '    svc_payments["<b>payments</b><br/><small>Captures payments for orders.</small>"]\n'
        '    svc_orders -- "order.created v1" --> svc_payments\n'
        '    svc_payments -- "payment.captured v1" --> svc_orders\n'
        "    classDef service fill:#f8fafc,stroke:#334155,color:#0f172a\n"
        "    class svc_orders,svc_payments service\n"
    )
    text = mermaid(system())
    assert '    svc_orders -. "calls capture_payment" .-> svc_payments\n' in text


def test_the_svg_places_services_in_layers_from_publisher_to_subscriber() -> None:
    picture = ET.fromstring(svg(system()))
    boxes = {
        group.get("id"): float(group.find(f"{SVG}rect").get("x"))
        for group in picture.iter(f"{SVG}g") if group.get("class") == "service"
    }
    assert boxes["svc_orders"] < boxes["svc_payments"] < boxes["svc_shipping"]
    paths = [path for path in picture.iter(f"{SVG}path") if path.get("class")]
    assert sorted(path.get("class") for path in paths) == ["call"] + ["message"] * 4
    [call] = [path for path in paths if path.get("class") == "call"]
    assert call.get("stroke-dasharray") == "6 4"
    labels = ["".join(text.itertext()) for text in picture.iter(f"{SVG}text")]
    for expected in ("orders", "Takes orders.", "order.created v1 (deprecated)",
                     "order.created v2", "calls capture_payment", "payment.captured v1"):
        assert expected in labels, expected


def test_edges_back_curve_below_and_long_edges_arc_above_the_boxes() -> None:
    picture = ET.fromstring(svg(system()))
    top = min(float(rect.get("y")) for group in picture.iter(f"{SVG}g")
              if group.get("class") == "service" for rect in group.iter(f"{SVG}rect"))
    bottom = top + 54
    curves = {}
    for path in picture.iter(f"{SVG}path"):
        if path.get("class") == "message":
            numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
            curves[(numbers[0], numbers[1])] = numbers[3]  # start -> first control point's y
    controls = sorted(curves.values())
    assert controls[0] < top  # orders -> shipping skips payments: it arcs above
    assert controls[-1] > bottom  # payments -> orders goes back: it curves below


def test_the_svg_is_deterministic_and_fits_every_label() -> None:
    first, second = svg(system()), svg(system())
    assert first == second
    picture = ET.fromstring(first)
    width = float(picture.get("width"))
    for text in picture.iter(f"{SVG}tspan"):
        assert 0 < float(text.get("x")) < width


def test_the_committed_example_picture_is_up_to_date() -> None:
    committed = (EXAMPLES / "system.svg").read_text()
    assert committed == svg(system(EXAMPLES / "system.yaml")), (
        "run `shoestring graph examples/system.yaml -o examples/system.svg`")


def test_the_command_prints_mermaid_or_writes_svg(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(main, ["graph", str(FITS)])
    assert printed.exit_code == 0 and printed.stdout.startswith("flowchart LR\n")
    out = tmp_path / "system.svg"
    written = runner.invoke(main, ["graph", str(FITS), "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text() == svg(system())
    as_svg = runner.invoke(main, ["graph", str(FITS), "--format", "svg"])
    assert as_svg.stdout.startswith("<svg ")


def test_the_command_refuses_a_system_it_cannot_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["graph", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "the file does not exist" in result.stderr
