#!/usr/bin/env python3
"""The Python side of tests/interop/matrix.py: `write SERVERS PREFIX` stores the matrix's
values with a default `multiput.Client` and prints their names; `read SERVERS PREFIX NAME...`
prints what each reads as, as JSON: name -> [category, value] or ["error", kind, message]."""

import json
import sys

import multiput

STRUCT = {"a": [1, 2], "b": "c"}
VALUES = {
    "text": "héllo wörld ✓",
    "empty_text": "",
    "bytes": bytes.fromhex("00ff7261770a"),
    "int": 42,
    "negative": -7,
    "big": 2**62,
    "float": 1.5,
    "small_float": -0.25,
    "true": True,
    "false": False,
    "struct": STRUCT,
}


def category(v):
    if isinstance(v, str):
        return ["text", v]
    if isinstance(v, bytes):
        return ["bytes", v.hex()]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", str(v)]
    if isinstance(v, float):
        return ["float", v]
    return ["struct", json.dumps(v, sort_keys=True)]


def main(action, servers, prefix, *names):
    client = multiput.Client(servers)  # default settings, as an app would have them
    if action == "write":
        for name, value in VALUES.items():
            client.set(prefix + name, value)
        print(" ".join(VALUES))
        return
    out = {}
    for name in names:
        try:
            v = client.get(prefix + name)
            out[name] = ["missing"] if v is None else category(v)
        except multiput.MultiputError as e:
            out[name] = ["error", e.kind, str(e)]
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
