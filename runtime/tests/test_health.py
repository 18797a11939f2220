"""Health endpoints: /livez says the process runs, /readyz says the database answers."""

from __future__ import annotations

from .shop import create_app, settings_for


def test_livez_passes_without_touching_anything(client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    assert response.get_json() == {"status": "pass"}


def test_readyz_passes_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    body = response.get_json()
    assert body["status"] == "pass"
    (check,) = body["checks"]["database:responseTime"]
    assert check["status"] == "pass"
    assert check["componentType"] == "datastore"
    assert check["observedUnit"] == "ms" and check["observedValue"] >= 0


def test_readyz_fails_with_503_when_the_database_is_unreachable():
    # Nothing listens on port 1: the connection is refused at once.
    app = create_app(settings_for("mysql://nobody:secret@127.0.0.1:1/nothing"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/health+json"
    body = response.get_json()
    assert body["status"] == "fail"
    (check,) = body["checks"]["database:responseTime"]
    assert check["status"] == "fail"
    assert "secret" not in response.get_data(as_text=True)  # the password is never shown


def test_livez_still_passes_when_the_database_is_unreachable():
    app = create_app(settings_for("mysql://nobody@127.0.0.1:1/nothing"))
    assert app.test_client().get("/livez").status_code == 200


def test_a_request_while_the_database_is_unreachable_gets_503_problem_json():
    app = create_app(settings_for("mysql://nobody:secret@127.0.0.1:1/nothing"))
    # Any route that touches the database; the health check answers in its own format.
    app.add_url_rule("/probe", "probe", lambda: str(app.extensions["chassis"].db.ping()))
    response = app.test_client().get("/probe")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert "secret" not in response.get_data(as_text=True)
