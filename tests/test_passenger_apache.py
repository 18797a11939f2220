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

from ..chassis.context import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    time.sleep(3)
    with open(Path(__file__).resolve().parents[2] / "handled.txt", "a") as out:
        out.write(f"{os.getpid()} {event['payment_id']}\\n")
"""

# Puts one payment.captured message into the queue, as the inbox stores one from the peer.
ENQUEUE = """
import uuid
from orders.chassis import events, queue
from orders.chassis.db import Database
from orders.chassis.settings import load_settings

settings = load_settings()
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
    """The orders example generated afresh from the template, as `shoestring new` makes it."""
    source = workspace / "generated"
    run_shoestring("new", str(SPEC), "-o", str(source))
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
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url_of_app(self) -> str:
        return "" if self.base_uri == "/" else self.base_uri


def install(workspace: Path, service: Path, venv: Path, layout: str, **env: str) -> Site:
    """Copy the service into a cPanel-like home in `layout`, with a .env holding a secret,
    migrated, with a signing key, owned by www-data."""
    home = workspace / layout / "home" / "cpuser"
    docroot = home / "public_html"
    app = {
        "apart": home / PACKAGE,
        "docroot": docroot,
        "folder": docroot / PACKAGE,
    }[layout]
    site = Site(home, docroot, app, "/orders" if layout == "folder" else "/", env=env)
    shutil.copytree(service, app, ignore=shutil.ignore_patterns("__pycache__"))
    docroot.mkdir(parents=True, exist_ok=True)
    lines = ["DATABASE_URL=sqlite:///var/orders.db", "PAYMENTS_URL=http://127.0.0.1:9/"]
    lines += [f"{key}={value}" for key, value in env.items()]
    # A value only the .env holds: whatever body contains it leaked the file.
    lines.append(f"DEPLOY_SECRET={site.secret}")
    (app / ".env").write_text("\n".join(lines) + "\n")
    (app / "tmp").mkdir()
    python = str(venv / "bin" / "python")
    for command in (["migrate"], ["keys", "generate"]):
        subprocess.run([python, "-m", PACKAGE, *command], cwd=app, check=True, capture_output=True)
    # The circuit breakers' database is made on first use; make it now so it is probed too.
    subprocess.run([python, "-m", PACKAGE, "breakers"], cwd=app, check=True, capture_output=True)
    web = pwd.getpwnam(WEB_USER)
    for root in [home, *var_dirs(site)]:
        for path in [root, *root.rglob("*")]:
            os.lchown(path, web.pw_uid, web.pw_gid)
    return site


def var_dirs(site: Site) -> list[Path]:
    outside = site.env.get("SERVICE_VAR_DIR")
    return [Path(outside)] if outside else []


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
LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so
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


def start_apache(workspace: Path, site: Site, venv: Path) -> Apache:
    port = free_port()
    run = workspace / f"apache-{port}"
    (run / "passenger").mkdir(parents=True)
    template = PASSENGER_AT_ROOT if site.base_uri == "/" else PASSENGER_UNDER_URI
    passenger = template.format(
        app=site.app, python=venv / "bin" / "python", base_uri=site.base_uri
    )
    conf = run / "httpd.conf"
    conf.write_text(
        HTTPD_CONF.format(
            port=port,
            run=run,
            docroot=site.docroot,
            mod_passenger=MOD_PASSENGER,
            passenger_root=PASSENGER_ROOT,
            passenger=passenger,
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

    def serve(layout: str, **env: str) -> tuple[Site, Apache]:
        site = install(workspace, service, venv, layout, **env)
        apache = start_apache(workspace, site, venv)
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
    keys = [path.name for path in (site.app / "var" / "keys").glob("*.pem")]
    named = [
        ".env",
        ".htaccess",
        "service.yaml",
        "passenger_wsgi.py",
        "requirements.txt",
        "requirements-dev.txt",
        "pyproject.toml",
        f"{PACKAGE}/handlers/create_order.py",
        f"{PACKAGE}/chassis/settings.py",
        f"{PACKAGE}/_generated/service.json",
        "var/",
        "var/orders.db",
        "var/orders.breakers.db",
        "var/keys/",
        "var/keys/keyring.json",
        *[f"var/keys/{name}" for name in keys],
    ]
    assert keys and set(named) <= set(answers)
    assert len(answers) > 100  # every file and folder of the service, sources and tests included
    served_files = {}
    for relative, (status, _, body) in answers.items():
        if status != 403 or REFUSAL not in body or leaked_secrets(site, body):
            served_files[relative] = (status, body[:80])
        assert not served_content(site, relative, body), relative
    assert served_files == {}
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

    # The Passenger log says what is wrong and how to fix it.
    log = apache.passenger_log()
    assert "inside the web server's document root (it is inside public_html/)" in log
    assert LAYOUT_ADVICE in log
