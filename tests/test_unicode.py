"""Free text from the spec and from Copier's answers reaches every generated file intact.

Descriptions (of the service, messages, versions, subscriptions, endpoints, peer calls and
fields), enum values and schema examples may hold any text: accents, emoji, CJK, quotes,
backslashes, tabs and newlines. Each generated file is parsed with its own format's parser
(TOML, YAML, JSON, Python) and must give the text back exactly; the generated service must
pass ruff, import, collect and run its own tests, and be installable by pip.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_shoestring
from shoestring.literal import WIDTH, docstring_text, flat, layout, width, wrap
from support import run_service_suite

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser under its own name
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]

# Everything YAML, TOML, JSON and Python each need to escape, and what a user writes anyway.
HARD = 'Étagères 📚 “livres” "double" \'single\' """three""" C:\\new\\table 日本語の本\tend\nline 2'


def text(where: str) -> str:
    return f"{where}: {HARD}"


ENUM = ["roman", "poésie", "📚", "l'été", '"cité"', "C:\\livres"]
EXAMPLE = "Le Petit Prince 🦊\n« Dessine-moi un mouton » \\o/"
QUOTE_LAST = 'Lend a book "now"'  # a description ending in a quote, before a docstring's end

SPEC: dict[str, Any] = {
    "shoestring": 1,
    "service": {"name": "books", "description": text("service")},
    "messages": {
        "book.shelved": {
            "description": text("message"),
            "versions": {
                1: {
                    "description": text("version"),
                    "fields": {
                        "book_id": "uuid",
                        "title": {"schema": {"type": "string"}, "description": text("field")},
                        "genre": f"enum[{', '.join(ENUM)}]",
                    },
                }
            },
        }
    },
    "subscriptions": [
        {
            "message": "book.lent",
            "version": 1,
            "from": "library",
            "retry": "patient",
            "description": text("subscription"),
            "fields": {
                "book_id": "uuid",
                "note": {
                    "schema": {"type": "string"},
                    "optional": True,
                    "description": text("subscribed field"),
                },
            },
        }
    ],
    "endpoints": [
        {
            "name": "shelve_book",
            "method": "POST",
            "path": "/v1/books",
            "description": text("endpoint"),
            "scopes": ["books:write"],
            "request": {
                "title": {"schema": {"type": "string"}, "description": text("request field")},
                "genre": f"enum[{', '.join(ENUM)}]",
            },
            "response": {
                "book_id": "uuid",
                "genre": f"enum[{', '.join(ENUM)}]",
                "title": {
                    "schema": {"type": "string", "examples": [EXAMPLE]},
                    "description": text("response field"),
                },
            },
        },
        {
            "name": "get_book",
            "method": "GET",
            "path": "/v1/books/{book_id}",
            "description": QUOTE_LAST,
            "scopes": ["books:read"],
            "request": {"book_id": "uuid"},
            "response": {"book_id": "uuid", "title": "str"},
        },
    ],
    "retry_policies": {"patient": {"max_attempts": 5, "base_seconds": 1, "max_seconds": 60}},
    "peers": {
        "library": {
            "url_env": "LIBRARY_URL",
            "calls": {
                "lend_book": {
                    "method": "POST",
                    "path": "/v1/loans",
                    "description": text("call") + ' "now"',
                    "request": {"book_id": "uuid", "genre": f"enum[{', '.join(ENUM)}]"},
                    "response": {"loan_id": "uuid"},
                }
            },
        }
    },
}


def one_line(value: str) -> str:
    """What a docstring or a package summary keeps of free text: words, single spaces."""
    return " ".join(value.split())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unicode")
    spec_file = folder / "books.yaml"
    spec_file.write_text(
        yaml.safe_dump(SPEC, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    run_shoestring("new", str(spec_file), "-o", str(folder / "books"))
    return folder / "books"


def parse_every_file(root: Path) -> dict[str, Any]:
    """Every text file of a generated service, parsed by its format's parser: path -> result."""
    parsed: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or {".venv", "__pycache__", "var"} & set(path.parts):
            continue
        relative = path.relative_to(root).as_posix()
        content = path.read_text(encoding="utf-8")  # every file is UTF-8
        if path.suffix == ".toml":
            parsed[relative] = tomllib.loads(content)
        elif path.suffix in (".yaml", ".yml"):
            parsed[relative] = yaml.safe_load(content)
        elif path.suffix == ".json":
            parsed[relative] = json.loads(content)
        elif path.suffix == ".py":
            compile(content, relative, "exec")
            parsed[relative] = ast.parse(content)
        else:
            parsed[relative] = content
    return parsed


def strings_in(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def docstring_of(tree: ast.Module, name: str | None = None) -> str:
    if name is None:
        found = ast.get_docstring(tree)
    else:
        [node] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
        found = ast.get_docstring(node)
    assert found is not None
    return found


# -- shoestring new -----------------------------------------------------------------------


def test_every_file_of_a_new_service_parses_and_gives_the_spec_text_back(service: Path) -> None:
    files = parse_every_file(service)
    generated = "books/_generated"

    assert files["service.yaml"] == SPEC
    assert files["pyproject.toml"]["project"]["description"] == one_line(text("service"))
    assert files[".copier-answers.yml"]["description"] == text("service")
    assert text("service") in files["README.md"]

    model = files[f"{generated}/service.json"]
    assert model["service"]["description"] == text("service")
    message = model["messages"]["book.shelved"]
    assert message["description"] == text("message")
    # (The model keeps no description of a version or a subscription: service.yaml holds them.)
    assert model["peers"]["library"]["calls"]["lend_book"]["description"] == (
        text("call") + ' "now"'
    )

    openapi = files[f"{generated}/openapi.json"]
    assert openapi["info"]["description"] == text("service")
    operation = openapi["paths"]["/v1/books"]["post"]
    assert operation["summary"] == text("endpoint")
    assert openapi["paths"]["/v1/books/{book_id}"]["get"]["summary"] == QUOTE_LAST
    asyncapi = files[f"{generated}/asyncapi.json"]
    assert asyncapi["info"]["description"].startswith(text("service") + "\n\n")

    schemas = f"{generated}/schemas"
    shelved = files[f"{schemas}/messages/book.shelved.v1.json"]
    assert shelved["description"] == text("message")
    assert shelved["properties"]["title"]["description"] == text("field")
    assert shelved["properties"]["genre"]["enum"] == ENUM
    lent = files[f"{schemas}/subscriptions/book.lent.v1.json"]
    assert lent["properties"]["note"]["description"] == text("subscribed field")
    request = files[f"{schemas}/endpoints/shelve_book.request.json"]
    assert request["properties"]["title"]["description"] == text("request field")
    assert request["properties"]["genre"]["enum"] == ENUM
    response = files[f"{schemas}/endpoints/shelve_book.response.json"]
    assert response["properties"]["title"]["description"] == text("response field")
    assert response["properties"]["title"]["examples"] == [EXAMPLE]


def test_python_of_a_new_service_holds_the_spec_text_exactly(service: Path) -> None:
    files = parse_every_file(service)

    stub = files["books/handlers/shelve_book.py"]
    assert one_line(docstring_of(stub)).startswith(one_line(f"POST /v1/books: {text('endpoint')}"))
    [returned] = [node for node in ast.walk(stub) if isinstance(node, ast.Return)]
    example = ast.literal_eval(returned.value)
    assert example["title"] == EXAMPLE
    assert example["genre"] in ENUM
    assert one_line(docstring_of(files["books/handlers/get_book.py"])).startswith(
        f"GET /v1/books/{{book_id}}: {QUOTE_LAST} "
    )

    peers = files["books/_generated/peers.py"]
    assert one_line(docstring_of(peers, "lend_book")) == one_line(
        f'POST /v1/loans: {text("call")} "now"'
    )
    assert set(ENUM) <= strings_in(peers)  # the Literal[...] of the enum field


def test_a_new_service_with_such_text_imports_and_passes_ruff(service: Path) -> None:
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import books._generated.registry, books._generated.peers, books._generated.converters",
        ],
        cwd=service,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    # The files the generator writes; the chassis and the README are the template's, whatever
    # the spec says.
    written = ["books/_generated", "books/handlers"]
    for command in (["check", *written], ["format", "--check", "--diff", *written]):
        ruff = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=service,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr


@pytest.mark.slow
def test_a_new_service_with_such_text_passes_its_own_tests_on_sqlite(service: Path) -> None:
    run_service_suite(service, args=("-x", "-m", "not mysql"))


def test_pip_reads_the_package_metadata_of_such_a_service(service: Path) -> None:
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--dry-run",
            "--ignore-installed",
            "--report",
            "-",
            str(service),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    [package] = json.loads(report.stdout)["install"]
    assert package["metadata"]["name"] == "books"
    assert package["metadata"]["summary"] == one_line(text("service"))


# -- copier copy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "description",
    [
        "Étagères 📚",
        HARD,
        "# not a comment: - nor a list item\\",
        "yes",
        "control \x7f\x1b and separators \u2028 \u00a0 here",
        "",
    ],
    ids=["emoji", "everything", "yaml-syntax", "yaml-boolean", "controls", "empty"],
)
def test_copier_copy_writes_the_description_answer_into_every_file(
    tmp_path: Path, description: str
) -> None:
    # Copier renders a git-tracked local template from a clone of its last commit: render a
    # copy of the working tree instead, as `shoestring new` does.
    template = tmp_path / "template"
    template.mkdir()
    shutil.copy2(REPO / "copier.yml", template / "copier.yml")
    shutil.copytree(
        REPO / "template",
        template / "template",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache"),
    )
    out = tmp_path / "books"
    copied = subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "--data",
            "service_name=books",
            "--data",
            f"description={description}",
            str(template),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert copied.returncode == 0, copied.stdout + copied.stderr

    files = parse_every_file(out)
    assert files["service.yaml"]["service"]["description"] == description
    assert files[".copier-answers.yml"]["description"] == description
    assert files["pyproject.toml"]["project"]["description"] == one_line(description)
    assert description in files["README.md"]
    generated = files["books/_generated/service.json"]
    assert generated["service"]["description"] == description
    assert files["books/_generated/openapi.json"]["info"].get("description", "") == description
    assert run_shoestring("generate", "--check", str(out)).returncode == 0


# -- the escapes themselves ---------------------------------------------------------------

ODD = [
    HARD,
    EXAMPLE,
    "nul \x00 del \x7f esc \x1b c1 \x85 bom \ufeff",
    "lines \u2028 and paragraphs \u2029 apart",
    "a lone surrogate \ud83d, a zero-width joiner 👩\u200d💻",
    "ends in a backslash \\",
    'ends in a quote "',
    "'single' ends in a quote'",
    '""""',
]


@pytest.mark.parametrize("value", ODD)
def test_python_string_literals_give_any_text_back(value: str) -> None:
    source = flat(value)
    assert ast.literal_eval(source) == value
    source.encode("utf-8")  # no lone surrogate left in the source itself
    assert "\n" not in source


@pytest.mark.parametrize("value", ODD)
def test_docstrings_give_any_text_back_with_its_whitespace_normalised(value: str) -> None:
    body = docstring_text(value)
    assert ast.literal_eval(f'"""{body}"""') == one_line(value)
    assert ast.literal_eval(f'"""{body} and more"""') == one_line(value) + " and more"


def test_wrapping_counts_wide_characters_as_two_columns() -> None:
    sentence = "日本語の本を棚に並べる、" * 20 + " 📚📚📚 " + "word " * 30
    for line in wrap(sentence, WIDTH):
        assert width(line) <= WIDTH or " " not in line
    assert width("日本") == 4 and width("é") == 1 and width("e\u0301") == 1
    long_list = ["日本語の本"] * 8
    assert "\n" in layout(long_list)  # 8 * 11 characters, but more than 88 columns


def test_generated_python_with_wide_text_is_ruff_clean(tmp_path: Path) -> None:
    spec = yaml.safe_dump(SPEC, sort_keys=False, allow_unicode=True)
    spec = spec.replace("Étagères", "日本語の本を棚に並べる、" * 6)
    root = tmp_path / "books"
    root.mkdir()
    (root / "service.yaml").write_text(spec, encoding="utf-8")
    run_shoestring("generate", str(root))
    ruff_strict = [sys.executable, "-m", "ruff", "check", "--isolated", "--line-length", "88"]
    ruff_strict += ["--select", "E,W,F"]
    ruff = subprocess.run(
        [*ruff_strict, "."],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout + textwrap.shorten(ruff.stderr, 2000)


def test_literals_are_the_same_under_every_python_s_unicode_tables() -> None:
    # U+1FACE (moose, Unicode 15) is unassigned in Python 3.10 and 3.11 and printable from
    # 3.12 on: left as it is by every version, and counted wide by every version.
    assert flat("\U0001face") == '"\U0001face"'
    assert width("\U0001face") == 2
    assert flat("a\u00a0b\u200bc") == '"a\\xa0b\\u200bc"'
