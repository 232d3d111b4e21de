#!/usr/bin/env python3
"""Prints, last, why each failed test failed: the lines around its panic, from a `cargo test`
log. CI keeps only the head and the tail of a long output, and a failing suite's tail is
otherwise the list of names without the reasons.

usage: test_digest.py LOG [--self-test]
"""

import re
import sys

SECTION = re.compile(r"^---- (\S+) stdout ----$")
PANIC = re.compile(r"^thread '.*' panicked at ")
# Lines kept before a panic (what the test printed on its way there) and from it on.
BEFORE, FROM = 12, 25


def digest(lines):
    out = []
    name, body = None, []

    def flush():
        if name is None:
            return
        at = next((i for i, l in enumerate(body) if PANIC.match(l)), None)
        out.append(f"==== {name}")
        if at is None:
            out.extend(body[-BEFORE:])
            return
        out.extend(body[max(0, at - BEFORE) : at])
        for line in body[at : at + FROM]:
            if line.startswith("stack backtrace:") or line.startswith("note: run with"):
                break
            out.append(line)

    for raw in lines:
        line = raw.rstrip("\n")
        m = SECTION.match(line)
        if m:
            flush()
            name, body = m.group(1), []
        elif name is not None:
            if line in ("failures:", "successes:"):
                flush()
                name, body = None, []
            else:
                body.append(line)
    flush()
    return out


def self_test():
    log = [
        "running 2 tests\n",
        "failures:\n",
        "\n",
        "---- a::b stdout ----\n",
        "kill 3 (Random): FAILED: short\n",
        "thread 'a::b' panicked at tests/it/a.rs:4:5:\n",
        "seed 7: 1 failed\n",
        "stack backtrace:\n",
        "   0: frame\n",
        "\n",
        "---- c::d stdout ----\n",
        "thread 'c::d' panicked at tests/it/c.rs:9:1:\n",
        "timed out\n",
        "\n",
        "failures:\n",
        "    a::b\n",
    ]
    got = digest(log)
    assert got[0] == "==== a::b", got
    assert "kill 3 (Random): FAILED: short" in got, got
    assert "seed 7: 1 failed" in got, got
    assert not any("frame" in l for l in got), got
    assert "==== c::d" in got and "timed out" in got, got
    assert not any(l.strip() == "a::b" for l in got), got


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
        sys.exit(0)
    with open(sys.argv[1], errors="replace") as f:
        lines = digest(f.readlines())
    if lines:
        print("why the failed tests failed:")
        print("\n".join(lines))
