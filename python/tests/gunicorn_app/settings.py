"""Settings of the gunicorn test project: one cache, ``multiput.django.MultiputCache`` on the
servers the test started (``MULTIPUT_GUNICORN_SERVERS``, comma-separated) with the OPTIONS in
``MULTIPUT_GUNICORN_OPTIONS`` (JSON)."""

import json
import os

SECRET_KEY = "multiput-gunicorn-test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "gunicorn_app.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True

CACHES = {
    "default": {
        "BACKEND": "multiput.django.MultiputCache",
        "LOCATION": os.environ["MULTIPUT_GUNICORN_SERVERS"],
        "OPTIONS": json.loads(os.environ.get("MULTIPUT_GUNICORN_OPTIONS") or "{}"),
    }
}

# A view's exception goes to gunicorn's log (the test shows it when a request fails).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
