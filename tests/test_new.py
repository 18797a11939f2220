"""`shoestring new SPEC -o DIR`: Copier's skeleton, the spec as service.yaml, generated code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from shoestring import __version__
from shoestring.manifest import MANIFEST_PATH
from support import GIT_ENV, shoestring, tree

REPO = Path(__file__).resolve().parents[1]
ORDERS_SPEC = REPO / "examples" / "orders" / "service.yaml"


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("new") / "orders"
    shoestring("new", str(ORDERS_SPEC), "-o", str(out))
    return out


def test_new_writes_the_spec_verbatim_and_generates_from_it(orders: Path) -> None:
    assert (orders / "service.yaml").read_bytes() == ORDERS_SPEC.read_bytes()
    assert (orders / MANIFEST_PATH).is_file()
    assert (orders / "orders/_generated/registry.py").is_file()
    assert (orders / "orders/handlers/create_order.py").is_file()
    assert (orders / "orders/handlers/on_payment_captured_v1.py").is_file()
    assert (orders / "passenger_wsgi.py").is_file()
    # The template's starter example is not there: the service is the spec's, nothing else.
    assert not (orders / "orders/handlers/get_greeting.py").exists()
    shoestring("generate", "--check", str(orders))


def test_new_answers_copier_from_the_spec_and_records_where_the_template_is(
    orders: Path,
) -> None:
    answers = yaml.safe_load((orders / ".copier-answers.yml").read_text())
    assert answers["service_name"] == "orders"
    assert answers["package"] == "orders"
    assert answers["description"] == "Takes and tracks customer orders."
    assert answers["database"] == "sqlite"
    # What `copier update` needs: the template's location, relative so that it is the same on
    # every machine, and the release tag of the template this service came from.
    assert (orders / answers["_src_path"]).resolve() == REPO
    assert not Path(answers["_src_path"]).is_absolute()
    assert answers["_commit"] == f"v{__version__}"


def test_new_refuses_an_invalid_spec_naming_file_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text(ORDERS_SPEC.read_text().replace("rate_limit: per_client_60m", "rate_limit: 60"))
    out = tmp_path / "out"
    result = shoestring("new", str(spec), "-o", str(out), expect=1)
    line = next(
        number
        for number, text in enumerate(spec.read_text().splitlines(), start=1)
        if "rate_limit: 60" in text
    )
    assert f"{spec}:{line}:" in result.stderr
    assert not out.exists()


def test_new_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = shoestring("new", str(ORDERS_SPEC), "-o", str(out), expect=1)
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert tree(out) == {"notes.txt": b"mine"}


def test_new_with_force_renders_into_an_existing_service_and_keeps_its_handlers(
    tmp_path: Path,
) -> None:
    out = tmp_path / "orders"
    shoestring("new", str(ORDERS_SPEC), "-o", str(out))
    handler = out / "orders/handlers/create_order.py"
    handler.write_text(handler.read_text() + "\n# business logic\n")
    (out / "notes.txt").write_text("mine")

    shoestring("new", str(ORDERS_SPEC), "-o", str(out), "--force")

    assert handler.read_text().endswith("# business logic\n")
    assert (out / "notes.txt").read_text() == "mine"
    shoestring("generate", "--check", str(out))


def test_new_records_the_template_location_given_with_src_path(tmp_path: Path) -> None:
    out = tmp_path / "orders"
    url = "https://example.org/shoestring.git"
    shoestring("new", str(ORDERS_SPEC), "-o", str(out), "--src-path", url, "--database", "mysql")
    answers = yaml.safe_load((out / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == url
    assert answers["database"] == "mysql"


def test_new_twice_gives_identical_services(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "orders", tmp_path / "b" / "orders"
    shoestring("new", str(ORDERS_SPEC), "-o", str(first))
    shoestring("new", str(ORDERS_SPEC), "-o", str(second))
    assert tree(first) == tree(second)


def test_new_explains_a_template_argument_that_is_no_template(tmp_path: Path) -> None:
    not_a_template = tmp_path / "elsewhere"
    not_a_template.mkdir()
    result = shoestring(
        "new",
        str(ORDERS_SPEC),
        "-o",
        str(tmp_path / "out"),
        "--template",
        str(not_a_template),
        expect=1,
    )
    assert "has no copier.yml" in result.stderr


def test_new_prints_the_next_steps(tmp_path: Path) -> None:
    result = shoestring("new", str(ORDERS_SPEC), "-o", str(tmp_path / "svc"))
    assert "python -m orders migrate" in result.stdout
    assert "orders/handlers/" in result.stdout


def test_new_from_a_git_url_lets_copier_record_the_url_and_the_release(tmp_path: Path) -> None:
    source = tmp_path / "shoestring"
    source.mkdir()
    shutil.copy2(REPO / "copier.yml", source / "copier.yml")
    shutil.copytree(
        REPO / "template", source / "template", ignore=shutil.ignore_patterns("*_cache*")
    )
    environ = {**os.environ, **GIT_ENV}
    for command in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "template"],
        ["tag", "v0.1.0"],
    ):
        subprocess.run(["git", *command], cwd=source, env=environ, check=True)
    url = f"git+{source.as_uri()}"

    out = tmp_path / "orders"
    shoestring("new", str(ORDERS_SPEC), "-o", str(out), "--template", url)

    answers = yaml.safe_load((out / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == url
    assert answers["_commit"] == "v0.1.0"
    shoestring("generate", "--check", str(out))
