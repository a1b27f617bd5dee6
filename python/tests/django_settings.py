"""Django settings for the backend tests: caches on the session memcached servers that
conftest.py started (their addresses come in MULTIPUT_TEST_SERVERS)."""

import os

SECRET_KEY = "multiput-tests"
USE_TZ = True
INSTALLED_APPS = []
DATABASES = {}

_SERVERS = os.environ.get("MULTIPUT_TEST_SERVERS", "127.0.0.1:11211")
_BACKEND = "multiput.django.MultiputCache"


def custom_key_func(key, key_prefix, version):
    "A customized cache key function (as in Django's own cache tests)."
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


CACHES = {
    "default": {"BACKEND": _BACKEND, "LOCATION": _SERVERS},
    "prefix": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "KEY_PREFIX": "cacheprefix%d" % os.getpid()},
    "v2": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "VERSION": 2},
    "custom_key": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "KEY_FUNCTION": custom_key_func},
    "custom_key2": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "KEY_FUNCTION": "django_settings.custom_key_func"},
    "list_location": {"BACKEND": _BACKEND, "LOCATION": _SERVERS.split(",")},
    "plain_keys": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "KEY_FUNCTION": "multiput.django.plain_key"},
    "forever": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "TIMEOUT": None},
    "far_future": {"BACKEND": _BACKEND, "LOCATION": _SERVERS, "TIMEOUT": 31536000},
    "strict": {
        "BACKEND": _BACKEND,
        "LOCATION": _SERVERS,
        "OPTIONS": {"raise_on_set_failure": True, "timeout": 0.5},
    },
    "replicated": {
        "BACKEND": _BACKEND,
        "LOCATION": _SERVERS,
        "KEY_PREFIX": "r",
        "OPTIONS": {"replicas": 3, "write_policy": "quorum", "timeout": 0.5},
    },
    "pymemcache": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": _SERVERS.split(",")[0],
    },
}
