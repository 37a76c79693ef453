#!/usr/bin/env python3
"""Fails when a dependency declares a `rust-version` above the crate's own.

Only one toolchain is installed here, so an older rustc cannot build the crate to prove its
`rust-version`; the next best is that no dependency a user builds asks for a newer one. Reads
`cargo metadata` with every feature on and walks the graph from this crate through normal and
build dependencies (dev-dependencies never reach a user's build), on every target.
"""
import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    root = meta["resolve"]["root"]
    ours = packages[root]["rust_version"]
    if not ours:
        sys.exit("Cargo.toml declares no rust-version")
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    seen, todo = {root}, [root]
    while todo:
        for dep in nodes[todo.pop()]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds <= {"dev"} or dep["pkg"] in seen:
                continue
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])
    seen.discard(root)
    above = sorted(
        (packages[id]["name"], packages[id]["version"], packages[id]["rust_version"])
        for id in seen
        if packages[id]["rust_version"] and version(packages[id]["rust_version"]) > version(ours)
    )
    highest = max(
        (packages[id]["rust_version"] for id in seen if packages[id]["rust_version"]),
        key=version,
    )
    for name, ver, needs in above:
        print(f"{name} {ver} declares rust-version {needs}, above the crate's {ours}")
    if above:
        sys.exit(1)
    print(f"rust-version {ours}: {len(seen)} dependencies, the highest declares {highest}")


main()
