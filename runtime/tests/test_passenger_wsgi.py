"""passenger_wsgi.py, the file cPanel's Passenger loads, as `shoestring new` writes it into a
service: it exposes a working `application`, and a 503 instead of a crash when the settings are
wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .shop import SERVICE, service_environment

# Loads passenger_wsgi.py the way Passenger does, then sends one request through WSGI.
PROBE = """
import io, json, runpy, sys
module = runpy.run_path("passenger_wsgi.py")
answer = {}
def start_response(status, headers):
    answer["status"] = status
    answer["headers"] = dict(headers)
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": sys.argv[1], "SERVER_NAME": "test",
           "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
           "wsgi.errors": sys.stderr, "SERVER_PROTOCOL": "HTTP/1.1"}
body = b"".join(module["application"](environ, start_response))
answer["body"] = json.loads(body)
print(json.dumps(answer))
"""


def probe(path: str, env: dict[str, str]) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, path],
        cwd=SERVICE.root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_passenger_gets_a_working_application(settings, db):
    answer, _ = probe("/readyz", service_environment(settings.database_url))
    assert answer["status"].startswith("200")
    assert answer["body"]["status"] == "pass"


def test_bad_settings_give_503_for_clients_and_the_reason_in_the_log():
    answer, log = probe("/livez", {"LOG_LEVEL": "LOUD"})
    assert answer["status"].startswith("503")
    assert answer["headers"]["Content-Type"] == "application/problem+json"
    assert "LOUD" not in json.dumps(answer)
    assert "LOG_LEVEL='LOUD'" in log
