"""Entry point for Phusion Passenger (cPanel "Setup Python App"), which serves `application`.

Passenger imports this file from the application root. Settings come from the environment the
panel sets and from .env in this folder; when they are wrong the service answers 503 and the
reason goes to the Passenger log (never to the client).

The application root must lie outside the web server's document root (public_html), or Apache
serves the service's own files: .env, var/keys/*.pem, the databases. The shipped .htaccess
refuses them where Apache reads it; this file also says so in the Passenger log at every start.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dotenv import load_dotenv  # noqa: E402  (after the path is set)

load_dotenv(ROOT / ".env")  # the environment wins: existing variables are not overridden

from shoestring_runtime import unavailable_app  # noqa: E402

from payments import SERVICE  # noqa: E402

# Folders that web servers serve as they are (cPanel's ~/www is a link to ~/public_html).
DOCUMENT_ROOT_NAMES = ("public_html", "htdocs", "httpdocs", "wwwroot")


def web_visible(root: Path) -> str | None:
    """Why the folder `root` looks served by a web server, or None.

    Passenger passes no DOCUMENT_ROOT to the app, so only the path and cPanel's own marks tell:
    a document root's name among the folders of the path (resolved, and as Passenger gave it),
    or the Passenger lines that "Setup Python App" writes into the .htaccess of the application
    URL's folder found in the application root itself.
    """
    for path in (root, Path(os.path.abspath(__file__)).parent):
        for name in DOCUMENT_ROOT_NAMES:
            if name in path.parts:
                return f"it is inside {name}/"
        if "/www/html/" in path.as_posix() + "/":
            return "it is inside www/html/"
    htaccess = root / ".htaccess"
    if htaccess.is_file() and "PassengerAppRoot" in htaccess.read_text(errors="replace"):
        return "its .htaccess holds the Passenger lines of an application URL"
    return None


reason = web_visible(ROOT)
if reason:
    print(
        f"payments: the application root {ROOT} is inside the web server's document root "
        f"({reason}): Apache may serve its files, .env, var/keys/*.pem and the databases among "
        "them, wherever the shipped .htaccess is not read. Fix the layout: move this folder "
        "outside public_html (for example to ~/payments), make it the Application root "
        "in Setup Python App, keep the Application URL, set SERVICE_VAR_DIR to a folder outside "
        "public_html, and restart (README: Deploy on cPanel).",
        file=sys.stderr,
        flush=True,
    )

try:
    from payments.app import create_app

    application = create_app()
except Exception as exc:  # bad settings, missing generated code, an error in app.py:
    application = unavailable_app(SERVICE, exc)  # say why in the log, answer 503
