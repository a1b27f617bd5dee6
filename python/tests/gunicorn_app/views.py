"""Views that read and write keys derived from the request. Every value names its key
(``value_of``), so the test recognises a reply that belongs to another key."""

import os

from django.core.cache import caches
from django.http import JsonResponse

#: Keys the master writes before forking; every request reads one back.
PRELOAD_KEYS = ["preload:%d" % n for n in range(64)]


def value_of(key):
    return "value-of:" + key


def preload():
    """Cache calls in the master, at import time: it now holds connections to the servers."""
    cache = caches["default"]
    failed = cache.set_many({k: value_of(k) for k in PRELOAD_KEYS})
    got = cache.get_many(PRELOAD_KEYS)
    if failed or got != {k: value_of(k) for k in PRELOAD_KEYS}:
        raise RuntimeError("preload: the cache did not keep the preload keys: %r" % failed)
    cache.set("preload:pid", os.getpid(), None)


def ready(request):
    """Up, without touching the cache."""
    return JsonResponse({"pid": os.getpid()})


def kv(request, i):
    """Write ``req:i``, read it back, read three earlier request keys (those not written yet
    are simply absent), one preload key and the PID of the process that preloaded."""
    cache = caches["default"]
    key = "req:%d" % i
    cache.set(key, value_of(key))
    others = sorted({"req:%d" % j for j in (i // 2, i // 3, i - 7) if 0 <= j < i})
    pre = PRELOAD_KEYS[i % len(PRELOAD_KEYS)]
    return JsonResponse(
        {
            "pid": os.getpid(),
            "key": key,
            "got": cache.get(key),
            "others": others,
            "many": cache.get_many(others),
            "preload_key": pre,
            "preload": cache.get(pre),
            "preload_pid": cache.get("preload:pid"),
        }
    )
