"""Placement vectors for RingMode::Rendezvous, computed by pymemcache itself.

Run: .venv/bin/python scripts/gen-pymemcache-vectors.py (needs pymemcache 4.0, as
scripts/test.sh installs it); writes docs/vectors/pymemcache/. Each case is the server
pymemcache's HashClient picks for the key (HashClient(servers).hasher.get_node(key), the
call its get/set route through), for str keys as Django's PyMemcacheCache passes them.
Pure computation: no server is contacted.
"""

import json
import os
import random

from pymemcache.client.base import normalize_server_spec
from pymemcache.client.hash import HashClient

CONFIGS = {
    "rendezvous_01_two_servers": ("two servers, default port", ["192.0.2.11:11211", "192.0.2.12"]),
    "rendezvous_02_three_custom_ports": (
        "three servers, custom ports and a host name",
        ["198.51.100.21:11212", "cache.example.com", "203.0.113.9:22122"],
    ),
    "rendezvous_03_five_servers": ("five servers", [f"192.0.2.{i}:11211" for i in range(1, 6)]),
    "rendezvous_04_ipv6_and_names": (
        "IPv6 literals and host names: labels are host:port without brackets",
        ["[2001:db8::1]:11211", "[2001:db8::2]:11300", "memcached-a.example.net:11211", "memcached-b.example.org"],
    ),
    "rendezvous_05_twelve_servers": ("twelve servers", [f"203.0.113.{i}:{11211 + i}" for i in range(1, 13)]),
}


def keys(rng):
    out = [f"user:{i}:session" for i in range(300)]
    out += [":1:" + f"views.decorators.cache.cache_page.{i}" for i in range(100)]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789:_-."
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    out += ["k" * n for n in (1, 2, 3, 4, 5, 200, 250)]
    uni = ["é", "ß", "日本", "語", "🙂", "ñ", "ü", "e\u0301", "Ω", "中文"]
    out += [f"{rng.choice(uni)}:{i}:{rng.choice(uni)}" for i in range(293)]
    return out[:1000]


def main():
    rng = random.Random(20261124)
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "..", "docs", "vectors", "pymemcache")
    os.makedirs(out_dir, exist_ok=True)
    for name, (description, servers) in CONFIGS.items():
        client = HashClient(servers, use_pooling=False)
        specs = []
        for s in servers:
            host, port = normalize_server_spec(s)  # pymemcache's own parse: IPv6 without brackets
            specs.append({"host": host, "port": port, "weight": 0})
        cases = []
        for k in keys(rng):
            node = client.hasher.get_node(k)
            host, _, port = node.rpartition(":")
            server = f"[{host}]:{port}" if ":" in host else node
            cases.append({"key": k, "server": server})
        doc = {
            "description": description + "; computed by pymemcache 4.0's HashClient (RendezvousHash, murmur3)",
            "mode": "rendezvous",
            "servers": specs,
            "cases": cases,
        }
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
