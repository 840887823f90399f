"""The lock files agree with pyproject.toml (run by .ci/run; `./dev lock` fixes what it finds).

pip installs the lock with --require-hashes and the project with --no-deps, so a dependency added to
pyproject.toml but not locked would only show as an ImportError later. This checks, without any
network, that every requirement of pyproject.toml (the runtime ones in requirements.txt; with the
extras in requirements-dev.txt) is pinned to a version it accepts, and that both files pin the same
versions. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for line in path.read_text().splitlines() if (m := PIN.match(line))}


def problems_of(requirements: list[str], locked: dict[str, str], lock_name: str) -> list[str]:
    found = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # not for this platform (the lock is made for Linux, Python 3.11)
        name = canonicalize_name(req.name)
        if name not in locked:
            found.append(f"{req.name} is required by pyproject.toml but not pinned in {lock_name}")
        elif not req.specifier.contains(locked[name], prereleases=True):
            found.append(f"{lock_name} pins {req.name}=={locked[name]}, pyproject.toml wants {req.specifier}")
    return found


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = project["project"]["dependencies"] + project["build-system"]["requires"]
    extras = [r for reqs in project["project"].get("optional-dependencies", {}).values() for r in reqs]
    prod, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    problems = problems_of(runtime, prod, "requirements.txt") + problems_of(runtime + extras, dev, "requirements-dev.txt")
    problems += [
        f"requirements.txt pins {n}=={v}, requirements-dev.txt {dev[n]}" for n, v in prod.items() if n in dev and dev[n] != v
    ]
    problems += [f"{n} is in requirements.txt but not in requirements-dev.txt" for n in prod if n not in dev]
    for problem in problems:
        print(f"check_lock: {problem}", file=sys.stderr)
    if problems:
        print("check_lock: run ./dev lock and commit requirements.txt and requirements-dev.txt", file=sys.stderr)
        return 1
    print(f"check_lock: requirements.txt ({len(prod)} pins) and requirements-dev.txt ({len(dev)}) agree with pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
