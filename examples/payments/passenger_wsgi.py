"""Entry point for Phusion Passenger (cPanel "Setup Python App"), which serves `application`.

Passenger imports this file from the application root. Settings come from the environment the
panel sets and from .env in this folder; when they are wrong the service answers 503 and the
reason goes to the Passenger log (never to the client).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dotenv import load_dotenv  # noqa: E402  (after the path is set)

load_dotenv(ROOT / ".env")  # the environment wins: existing variables are not overridden

from payments.chassis.app import create_app, unavailable_app  # noqa: E402

try:
    application = create_app()
except Exception as exc:  # bad settings, missing generated code: say why in the log, answer 503
    application = unavailable_app(exc)
