"""The WSGI application. Under ``gunicorn --preload`` this module is imported by the master,
which then uses the cache (``views.preload``) before it forks the workers: every worker starts
with a copy of a client that has open connections."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gunicorn_app.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from . import views  # noqa: E402

views.preload()
