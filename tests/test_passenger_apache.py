"""A generated service under real Apache and mod_passenger, laid out the ways cPanel users lay it
out, and its cron lines under `flock`.

cPanel's "Setup Python App" serves `passenger_wsgi.py` through Apache and mod_passenger, and
Apache serves whatever file of the document root a URL names. These tests install the service
three ways, each in a private Apache (its own config, a free loopback port, started and stopped
by the test):

- apart: the application root outside the document root (what the README asks for): the routes
  answer through Passenger;
- docroot: the application root IS the document root (the service uploaded into public_html);
- folder: the application root is a folder of the document root, served under a base URI.

In the last two, no file of the service may be served: every one is requested, and none of its
content (nor any secret) may come back.

Debian's packages: `.ci/install-apache` installs them. Passenger 6.0.17 cannot run Python 3.12+
(its loader imports `imp`), so the app runs in a venv made from Debian's /usr/bin/python3 (3.11),
its files owned by www-data: Passenger runs an app as the owner of its startup file.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import EXAMPLES, run_shoestring
from support import free_port

pytestmark = pytest.mark.slow

APACHE = Path("/usr/sbin/apache2")
MOD_PASSENGER = Path("/usr/lib/apache2/modules/mod_passenger.so")
PASSENGER_ROOT = Path("/usr/lib/ruby/vendor_ruby/phusion_passenger/locations.ini")
SYSTEM_PYTHON = Path("/usr/bin/python3")
PACKAGE = "orders"
SPEC = EXAMPLES / "orders" / "service.yaml"
WEB_USER = "www-data"

# A handler for the worker test: it takes long enough for a second cron run to start meanwhile,
# and leaves one line per run that handled a message.
SLOW_HANDLER = """\
import os
import time
from pathlib import Path
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    time.sleep(3)
    with open(Path(__file__).resolve().parents[2] / "handled.txt", "a") as out:
        out.write(f"{os.getpid()} {event['payment_id']}\\n")
"""

# Puts one payment.captured message into the queue, as the inbox stores one from the peer.
ENQUEUE = """
import uuid
from orders import SERVICE
from shoestring_runtime import events, queue
from shoestring_runtime.db import Database

settings = SERVICE.load_settings()
data = {"payment_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()), "amount_cents": 100,
        "captured_at": "2026-01-01T00:00:00Z"}
event = events.envelope(source="payments", type_="payment.captured", version=1, data=data,
                        dataschema="https://payments/schemas/payment.captured/1",
                        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
with Database(settings.database_url, base_dir=settings.root).transaction() as conn:
    queue.accept(conn, [event])
print(data["payment_id"])
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "Apache is started as root here, so that Passenger can run the app as www-data"
    for path in (APACHE, MOD_PASSENGER, PASSENGER_ROOT, SYSTEM_PYTHON):
        if not path.exists():
            return f"{path} is missing: run .ci/install-apache (Debian's apache2 and passenger)"
    return None


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    """A folder www-data can enter (pytest's own tmp folders are private to root)."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    path = Path(tempfile.mkdtemp(prefix="shoestring-passenger-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def service(workspace: Path) -> Path:
    """The orders example generated afresh from the template, as `shoestring new` makes it, with
    the runtime's wheel in vendor/ (a cPanel account reaches no index that has it)."""
    source = workspace / "generated"
    run_shoestring("new", str(SPEC), "-o", str(source), "--vendor-runtime")
    (source / PACKAGE / "handlers" / "on_payment_captured_v1.py").write_text(SLOW_HANDLER)
    return source


@pytest.fixture(scope="module")
def venv(workspace: Path, service: Path) -> Path:
    """A venv from Debian's Python 3.11 with the service's requirements, built once."""
    path = workspace / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(path / "bin" / "pip"), "install", "-q", "-r", str(service / "requirements.txt")],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class Site:
    """One installation: the account's home, its document root, the app root, what it holds."""

    home: Path
    docroot: Path
    app: Path
    base_uri: str = "/"
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    var_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.var_dir = self.app / "var"

    @property
    def url_of_app(self) -> str:
        return "" if self.base_uri == "/" else self.base_uri


def install(
    workspace: Path, service: Path, venv: Path, layout: str, var_outside: bool = False
) -> Site:
    """Copy the service into a cPanel-like home in `layout`, with a .env holding a secret,
    migrated, with a signing key, owned by www-data. `var_outside`: SERVICE_VAR_DIR names a
    folder beside public_html, as the README's steps set it."""
    home = workspace / f"{layout}-{uuid.uuid4().hex[:8]}" / "home" / "cpuser"
    docroot = home / "public_html"
    app = {
        "apart": home / PACKAGE,
        "docroot": docroot,
        "folder": docroot / PACKAGE,
    }[layout]
    site = Site(home, docroot, app, "/orders" if layout == "folder" else "/")
    shutil.copytree(service, app, ignore=shutil.ignore_patterns("__pycache__"))
    docroot.mkdir(parents=True, exist_ok=True)
    if var_outside:
        site.var_dir = home / f"{PACKAGE}-var"
        site.var_dir.mkdir(mode=0o700)
    lines = ["DATABASE_URL=sqlite:///var/orders.db", "PAYMENTS_URL=http://127.0.0.1:9/"]
    if site.var_dir != app / "var":
        lines.append(f"SERVICE_VAR_DIR={site.var_dir}")
    # A value only the .env holds: whatever body contains it leaked the file.
    lines.append(f"DEPLOY_SECRET={site.secret}")
    (app / ".env").write_text("\n".join(lines) + "\n")
    (app / "tmp").mkdir()
    python = str(venv / "bin" / "python")
    # The circuit breakers' database is made on first use: `breakers` makes it, to be probed too.
    for command in (["migrate"], ["keys", "generate"], ["breakers"]):
        subprocess.run([python, "-m", PACKAGE, *command], cwd=app, check=True, capture_output=True)
    web = pwd.getpwnam(WEB_USER)
    for path in [home, *home.rglob("*")]:
        os.lchown(path, web.pw_uid, web.pw_gid)
    return site


HTTPD_CONF = """\
ServerRoot /etc/apache2
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {run}/apache-error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_host_module /usr/lib/apache2/modules/mod_authz_host.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
{rewrite}LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule passenger_module {mod_passenger}
TypesConfig /etc/mime.types
PassengerRoot {passenger_root}
PassengerDefaultRuby /usr/bin/ruby
PassengerInstanceRegistryDir {run}/passenger
PassengerDisableSecurityUpdateCheck on
PassengerDisableAnonymousTelemetry on
# The restart test: look at tmp/restart.txt on every request, not every 10 s.
PassengerStatThrottleRate 0
PassengerLogFile {run}/passenger.log
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<VirtualHost 127.0.0.1:{port}>
    DocumentRoot {docroot}
    # cPanel lets accounts use .htaccess files: the service's own rules must hold.
    <Directory {docroot}>
        AllowOverride All
        Options -MultiViews -Indexes +FollowSymLinks
        Require all granted
    </Directory>
{passenger}
</VirtualHost>
"""

# cPanel writes these into the .htaccess of the application URL's folder; stock Passenger allows
# them only in the server's config.
PASSENGER_AT_ROOT = """\
    PassengerAppRoot {app}
    PassengerPython {python}
    PassengerAppType wsgi
    PassengerStartupFile passenger_wsgi.py"""
PASSENGER_UNDER_URI = """\
    <Location {base_uri}>
        PassengerBaseURI {base_uri}
        PassengerAppRoot {app}
        PassengerPython {python}
        PassengerAppType wsgi
        PassengerStartupFile passenger_wsgi.py
    </Location>"""


@dataclass
class Apache:
    url: str
    run: Path
    conf: Path

    def passenger_log(self) -> str:
        log = self.run / "passenger.log"
        return log.read_text(errors="replace") if log.exists() else ""


def start_apache(
    workspace: Path, site: Site, venv: Path, passenger: bool = True, rewrite: bool = True
) -> Apache:
    """Apache serving `site`: through Passenger unless `passenger` is false (a copy of the
    service that no Setup Python App points at), with mod_rewrite unless `rewrite` is false."""
    port = free_port()
    run = workspace / f"apache-{port}"
    (run / "passenger").mkdir(parents=True)
    template = PASSENGER_AT_ROOT if site.base_uri == "/" else PASSENGER_UNDER_URI
    lines = template.format(app=site.app, python=venv / "bin" / "python", base_uri=site.base_uri)
    conf = run / "httpd.conf"
    conf.write_text(
        HTTPD_CONF.format(
            port=port,
            run=run,
            docroot=site.docroot,
            mod_passenger=MOD_PASSENGER,
            passenger_root=PASSENGER_ROOT,
            passenger=lines if passenger else "",
            rewrite="" if rewrite else "# ",
        )
    )
    subprocess.run([str(APACHE), "-f", str(conf), "-k", "start"], check=True, capture_output=True)
    apache = Apache(f"http://127.0.0.1:{port}", run, conf)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(apache.url + "/", timeout=5)
            return apache
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_apache(apache)
    raise AssertionError(f"Apache did not answer on {apache.url}: {(run / 'apache-error.log')}")


def stop_apache(apache: Apache) -> None:
    pid_file = apache.run / "httpd.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    subprocess.run(
        [str(APACHE), "-f", str(apache.conf), "-k", "stop"], check=False, capture_output=True
    )
    deadline = time.monotonic() + 15
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def served(workspace: Path, service: Path, venv: Path) -> Iterator:
    """A function that installs the service in a layout and serves it; all stop afterwards."""
    started: list[Apache] = []

    def serve(layout: str, var_outside: bool = False, **apache: bool) -> tuple[Site, Apache]:
        site = install(workspace, service, venv, layout, var_outside)
        apache = start_apache(workspace, site, venv, **apache)
        started.append(apache)
        return site, apache

    yield serve
    for apache in started:
        stop_apache(apache)


def token(site: Site, venv: Path, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", PACKAGE, "token", *args],
        cwd=site.app,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


# What every installation must never hand out: the .env's secret, a private key, a database.
def leaked_secrets(site: Site, body: bytes) -> list[str]:
    found = []
    if site.secret.encode() in body:
        found.append(".env secret")
    if b"PRIVATE KEY" in body:
        found.append("private key")
    if b"SQLite format 3" in body:
        found.append("SQLite database")
    return found


def files_of(site: Site) -> list[str]:
    """Every file and folder of the service, relative to the app root."""
    paths = []
    for path in sorted(site.app.rglob("*")):
        relative = path.relative_to(site.app).as_posix()
        paths.append(relative + "/" if path.is_dir() else relative)
    return paths


def probe(site: Site, apache: Apache) -> dict[str, tuple[int, str, bytes]]:
    """Ask for every file and folder of the service: path -> (status, content type, body)."""
    answers = {}
    for relative in files_of(site):
        response = requests.get(f"{apache.url}{site.url_of_app}/{relative}", timeout=30)
        answers[relative] = (
            response.status_code,
            response.headers.get("Content-Type", ""),
            response.content,
        )
    return answers


def served_content(site: Site, relative: str, body: bytes) -> bool:
    """Whether `body` holds the content of the service's file `relative`."""
    path = site.app / relative
    if path.is_dir() or not path.exists():
        return False
    content = path.read_bytes()
    chunk = content.strip()[:200]
    return len(chunk) >= 8 and chunk in body


def test_app_root_apart_from_the_document_root_answers_through_passenger(served, venv):
    site, apache = served("apart")
    base = apache.url

    assert requests.get(base + "/livez", timeout=30).status_code == 200
    ready = requests.get(base + "/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "pass"

    headers = {
        "Authorization": f"Bearer {token(site, venv, 'orders:write')}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    order = {"customer_id": str(uuid.uuid4()), "amount_cents": 1250, "currency": "EUR"}
    first = requests.post(base + "/v1/orders", json=order, headers=headers, timeout=30)
    assert first.status_code == 201, first.text
    replay = requests.post(base + "/v1/orders", json=order, headers=headers, timeout=30)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers.get("Idempotent-Replayed") == "true"

    bad = dict(order, amount_cents="lots")
    headers["Idempotency-Key"] = str(uuid.uuid4())
    invalid = requests.post(base + "/v1/orders", json=bad, headers=headers, timeout=30)
    assert invalid.status_code == 422
    assert invalid.headers["Content-Type"].startswith("application/problem+json")

    # The app's files are not in the document root: each path goes to the app, which has no
    # such route.
    for relative, (status, content_type, body) in probe(site, apache).items():
        assert status == 404, relative
        assert content_type.startswith("application/problem+json"), relative
        assert not leaked_secrets(site, body), relative
    # A well-placed app root is not reported as web-visible.
    assert "web server's document root" not in apache.passenger_log()


# What the shipped .htaccess answers instead of a file.
REFUSAL = b"never served over HTTP"
LAYOUT_ADVICE = "move this folder outside public_html"


@pytest.mark.parametrize("layout", ["docroot", "folder"])
def test_no_file_of_a_web_visible_app_root_is_served(served, venv, layout):
    site, apache = served(layout)
    answers = probe(site, apache)
    keys = [path.name for path in (site.var_dir / "keys").glob("*.pem")]
    named = [
        ".env",
        ".htaccess",
        "service.yaml",
        "passenger_wsgi.py",
        "requirements.txt",
        "requirements-dev.txt",
        "pyproject.toml",
        f"{PACKAGE}/handlers/create_order.py",
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/_generated/service.json",
        "var/",
        "var/orders.db",
        "var/orders.breakers.db",
        "var/keys/",
        "var/keys/keyring.json",
        *[f"var/keys/{name}" for name in keys],
    ]
    named += [f"vendor/{wheel.name}" for wheel in (site.app / "vendor").glob("*.whl")]
    assert keys and set(named) <= set(answers) and "vendor/" in answers
    # Every file and folder of the service, sources, tests and the runtime's wheel included
    # (75 for the orders service).
    assert len(answers) > 60
    served_files = {}
    for relative, (status, _, body) in answers.items():
        if status != 403 or REFUSAL not in body or leaked_secrets(site, body):
            served_files[relative] = (status, body[:80])
        assert not served_content(site, relative, body), relative
    assert served_files == {}
    # The shipped check, run from the app root as the README says, finds nothing served.
    check = subprocess.run(
        ["sh", "deploy/check-exposure.sh", apache.url + site.url_of_app],
        cwd=site.app,
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    asked, served_count = re.search(
        r"(\d+) paths asked for .*: (\d+) served", check.stdout
    ).groups()
    assert int(asked) >= len(answers) and served_count == "0"
    # The same files asked for in a way Apache decodes.
    encoded = requests.get(f"{apache.url}{site.url_of_app}/%2e%65nv", timeout=30)
    assert encoded.status_code == 403 and not leaked_secrets(site, encoded.content)

    # The routes still answer through Passenger, the app's own errors as they were.
    base = apache.url + site.url_of_app
    assert requests.get(base + "/livez", timeout=30).status_code == 200
    assert requests.get(base + "/readyz", timeout=30).json()["status"] == "pass"
    jwks = requests.get(base + "/.well-known/jwks.json", timeout=30)
    assert jwks.status_code == 200 and jwks.json()["keys"]
    headers = {
        "Authorization": f"Bearer {token(site, venv, 'orders:write')}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    order = {"customer_id": str(uuid.uuid4()), "amount_cents": 5, "currency": "EUR"}
    assert requests.post(base + "/v1/orders", json=order, headers=headers, timeout=30).ok
    wrong_scope = {"Authorization": f"Bearer {token(site, venv, 'orders:read')}"}
    refused = requests.post(base + "/v1/orders", json=order, headers=wrong_scope, timeout=30)
    assert refused.status_code == 403
    assert refused.headers["Content-Type"].startswith("application/problem+json")

    if layout == "docroot":
        # The certificate check that AutoSSL and Let's Encrypt run through the document root
        # still finds the file they wrote (it is not the service's).
        challenge = site.docroot / ".well-known" / "acme-challenge" / "c2hvZXN0cmluZw"
        challenge.parent.mkdir(parents=True)
        challenge.write_text("c2hvZXN0cmluZw.key-authorization")
        os.chmod(challenge.parent.parent, 0o755)
        answer = requests.get(f"{apache.url}/.well-known/acme-challenge/c2hvZXN0cmluZw", timeout=30)
        assert (answer.status_code, answer.text) == (200, challenge.read_text())

    # The Passenger log says what is wrong and how to fix it.
    log = apache.passenger_log()
    assert "inside the web server's document root (it is inside public_html/)" in log
    assert LAYOUT_ADVICE in log


@pytest.mark.parametrize(
    "layout, apache, route_answer",
    [
        # A copy left in public_html that no Setup Python App serves: files are refused, other
        # paths are not found.
        ("folder", {"passenger": False}, 404),
        # No mod_rewrite: nothing tells a route from a file, so everything is refused.
        ("docroot", {"rewrite": False}, 403),
    ],
    ids=["folder-without-passenger", "docroot-without-mod-rewrite"],
)
def test_where_routes_cannot_work_every_request_is_refused_not_served(
    served, layout, apache, route_answer
):
    site, server = served(layout, **apache)
    for relative, (status, _, body) in probe(site, server).items():
        assert status == 403 and REFUSAL in body, (relative, status, body[:80])
        assert not served_content(site, relative, body) and not leaked_secrets(site, body)
    route = requests.get(f"{server.url}{site.url_of_app}/livez", timeout=30)
    assert route.status_code == route_answer
    assert not leaked_secrets(site, route.content)


def test_var_dir_outside_the_app_root_holds_the_keys_and_databases(served, venv):
    site, apache = served("docroot", var_outside=True)
    base = apache.url

    headers = {
        "Authorization": f"Bearer {token(site, venv, 'orders:write')}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    order = {"customer_id": str(uuid.uuid4()), "amount_cents": 7, "currency": "USD"}
    created = requests.post(base + "/v1/orders", json=order, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    assert requests.get(base + "/readyz", timeout=30).json()["status"] == "pass"

    # Nothing of var/ was made in the web-visible app root: even where no .htaccess is read,
    # the keys and the databases are not one URL away.
    assert not (site.app / "var").exists()
    assert list((site.var_dir / "keys").glob("*.pem"))
    assert (site.var_dir / "orders.db").stat().st_size > 0
    for path in ("var/orders.db", "var/keys/keyring.json", "var/"):
        answer = requests.get(f"{base}/{path}", timeout=30)
        assert answer.status_code == 404 and not leaked_secrets(site, answer.content)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("/nonexistent/orders-var", "is not a folder: create it (mkdir -m 700"),
        ("orders-var", "must be an absolute path"),
    ],
)
def test_a_wrong_var_dir_stops_the_service_at_start_up(service, venv, value, problem):
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", PACKAGE, "check"],
        cwd=service,
        check=False,
        env={**os.environ, "SERVICE_VAR_DIR": value, "PAYMENTS_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"SERVICE_VAR_DIR={value!r}: {problem}" in result.stderr


def app_processes(app: Path) -> set[int]:
    """The processes Passenger runs the app in: their working folder is the app root."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == app:
                    pids.add(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return pids


def test_touching_tmp_restart_txt_restarts_the_app(served):
    site, apache = served("apart")
    assert requests.get(apache.url + "/livez", timeout=30).status_code == 200
    before = app_processes(site.app)
    assert before

    (site.app / "tmp" / "restart.txt").touch()
    assert requests.get(apache.url + "/livez", timeout=30).status_code == 200
    after = app_processes(site.app)
    assert after and not after & before


def cron_command(name: str, service: Path) -> str:
    """The command of the line of deploy/crontab that runs `python -m orders NAME`."""
    lines = [
        line
        for line in (service / "deploy" / "crontab").read_text().splitlines()
        if line and not line.startswith("#") and f" -m {PACKAGE} {name} " in line
    ]
    assert len(lines) == 1, lines
    return lines[0].split(None, 5)[5]


def test_overlapping_cron_runs_of_the_worker_do_the_work_once(workspace, service, venv):
    # The account's home as the crontab expects it: the app, its var folder, the virtualenv.
    home = workspace / "cron" / "home" / "cpuser"
    app = home / PACKAGE
    shutil.copytree(service, app, ignore=shutil.ignore_patterns("__pycache__"))
    (home / f"{PACKAGE}-var").mkdir()
    python_dir = home / "virtualenv" / PACKAGE / "3.11"
    python_dir.parent.mkdir(parents=True)
    python_dir.symlink_to(venv)
    (app / ".env").write_text(
        f"SERVICE_VAR_DIR=~/{PACKAGE}-var\nPAYMENTS_URL=http://127.0.0.1:9/\n"
    )
    env = {**os.environ, "HOME": str(home)}
    python = str(python_dir / "bin" / "python")
    subprocess.run([python, "-m", PACKAGE, "migrate"], cwd=app, env=env, check=True)
    enqueued = subprocess.run(
        [python, "-c", ENQUEUE], cwd=app, env=env, check=True, capture_output=True, text=True
    )
    payment_id = enqueued.stdout.strip()

    command = cron_command("worker", service)
    assert command.startswith(f"cd ~/{PACKAGE} && flock -n ")
    assert "--max-seconds 50" in command
    # As cron runs a line: /bin/sh, from the home folder.
    first = subprocess.Popen(["/bin/sh", "-c", command], cwd=home, env=env)
    time.sleep(1.0)  # the first holds the lock at once, and its handler takes 3 s
    started = time.monotonic()
    second = subprocess.run(["/bin/sh", "-c", command], cwd=home, env=env, check=False)
    waited = time.monotonic() - started
    assert second.returncode == 1  # flock -n: the lock is held, nothing ran
    assert waited < 1.0
    assert first.poll() is None  # the first is still at work
    assert first.wait(timeout=60) == 0

    # The data went to the var folder the .env names with ~, none into the app root.
    assert (home / f"{PACKAGE}-var" / "orders.db").exists() and not (app / "var").exists()
    handled = (app / "handled.txt").read_text().splitlines()
    assert [line.split()[1] for line in handled] == [payment_id]
    # The worker's log went where the line sends it, in the var folder.
    assert (home / f"{PACKAGE}-var" / "worker.log").exists()

    # The health check's line prints nothing when all is well: cron mails only problems.
    check = subprocess.run(
        ["/bin/sh", "-c", cron_command("check", service)],
        cwd=home,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


# What "Setup Python App" writes into the .htaccess of the application URL's folder.
CPANEL_PASSENGER_LINES = """\
# DO NOT REMOVE. CLOUDLINUX PASSENGER CONFIGURATION BEGIN
PassengerAppRoot "{app}"
PassengerBaseURI "/"
PassengerPython "/home/cpuser/virtualenv/orders/3.11/bin/python"
# DO NOT REMOVE. CLOUDLINUX PASSENGER CONFIGURATION END
"""


def start_up_log(app: Path, venv: Path) -> str:
    """What passenger_wsgi.py writes to the Passenger log when Passenger loads it."""
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import passenger_wsgi"],
        cwd=app,
        env={**os.environ, "PAYMENTS_URL": "http://127.0.0.1:9"},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stderr


def test_an_app_root_that_is_its_urls_folder_is_reported_at_start_up(workspace, service, venv):
    # A document root without a telling name (an addon domain's folder, ~/example.com): cPanel's
    # Passenger lines in the app root's own .htaccess give it away.
    app = workspace / "addon" / "home" / "cpuser" / "example.com"
    shutil.copytree(service, app, ignore=shutil.ignore_patterns("__pycache__"))
    assert "document root" not in start_up_log(app, venv)

    htaccess = app / ".htaccess"
    htaccess.write_text(CPANEL_PASSENGER_LINES.format(app=app) + htaccess.read_text())
    log = start_up_log(app, venv)
    assert f"the application root {app} is inside the web server's document root" in log
    assert "(its .htaccess holds the Passenger lines of an application URL)" in log
    assert LAYOUT_ADVICE in log
