"""The smallest Python program on multiput, and its Django cache backend:

    python hello.py 127.0.0.1:11211,127.0.0.1:11212
"""

import sys

import multiput

servers = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:11211"
client = multiput.Client(servers)
client.set("hello:python", {"from": "Python", "n": 1}, expire=60)
assert client.get("hello:python") == {"from": "Python", "n": 1}
print("hello:python =", client.get("hello:python"))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    CACHES={"default": {"BACKEND": "multiput.django.MultiputCache", "LOCATION": servers.replace(",", ";")}}
)
django.setup()
from django.core.cache import cache  # noqa: E402

cache.set("hello:django", [1, 2, 3], 60)
assert cache.get("hello:django") == [1, 2, 3]
assert cache.get_or_set("hello:django:n", lambda: 41) == 41
assert cache.incr("hello:django:n") == 42
print("django cache: ok")
