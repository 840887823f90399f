"""`./dev audit`: known vulnerabilities in the installed environment (.venv), the project itself skipped.

pip-audit asks PyPI about each installed version (GET /pypi/NAME/VERSION/json). Where the index does
not serve that URL (the PyPI mirror of our development machines and CI answers 404 there), pip-audit
can only skip the package. For those this script reads GET /pypi/NAME/json instead: its
`vulnerabilities` are the latest release's, hence exactly ours when the installed version is the
latest. A package that is neither is listed as not audited (a warning: nothing known against it,
but nothing checked either).

Exit status 1 when a known vulnerability is found, except those in IGNORED; 0 otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Vulnerability id -> why it cannot be fixed yet. Each becomes a `--ignore-vuln` for pip-audit.
IGNORED: dict[str, str] = {}

PYPI = "https://pypi.org/pypi"
VENV_BIN = Path(sys.executable).parent


def pip_audit() -> dict:
    cmd = [str(VENV_BIN / "pip-audit"), "--local", "--skip-editable", "--format", "json", "--progress-spinner", "off"]
    for vuln in IGNORED:
        cmd += ["--ignore-vuln", vuln]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode not in (0, 1):  # 1 = vulnerabilities found; anything else is pip-audit failing
        sys.exit(f"pip-audit failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def latest_release_vulns(name: str) -> tuple[str, list[dict]]:
    with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=60) as resp:
        project = json.load(resp)
    vulns = [v for v in project.get("vulnerabilities") or [] if not v.get("withdrawn")]
    return project["info"]["version"], vulns


def main() -> int:
    started = time.monotonic()
    report = pip_audit()
    found: list[tuple[str, str, str, list[str]]] = []  # name, version, id, fixed in
    audited, not_audited, skipped = 0, [], []
    for dep in report["dependencies"]:
        if "skip_reason" in dep:
            if "editable" not in dep["skip_reason"]:  # the project itself
                skipped.append(dep)
            continue
        audited += 1
        found += [(dep["name"], dep["version"], v["id"], v.get("fix_versions", [])) for v in dep["vulns"]]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: _try(latest_release_vulns, d["name"]), skipped))
    for dep, answer in zip(skipped, answers, strict=True):
        name, version = dep["name"], _version(dep)
        if isinstance(answer, Exception) or answer[0] != version:
            latest = "unreachable" if isinstance(answer, Exception) else f"latest {answer[0]}"
            not_audited.append(f"{name} {version} ({latest})")
            continue
        audited += 1
        seen: set[str] = set()  # one advisory is often listed under each of its ids (PYSEC, GHSA)
        for v in answer[1]:
            ids = {v["id"], *(v.get("aliases") or [])}
            if not ids & (IGNORED.keys() | seen):
                found.append((name, version, v["id"], v.get("fixed_in") or []))
            seen |= ids
    for name, version, vuln, fixed in found:
        print(f"VULNERABLE {name} {version}: {vuln} (fixed in {', '.join(fixed) or 'no release yet'})")
    for vuln, why in IGNORED.items():
        print(f"ignored {vuln}: {why}")
    if not_audited:
        print(f"warning: {len(not_audited)} not audited (no data for the installed version): {'; '.join(not_audited)}")
    print(
        f"audit: {audited} packages audited, {len(found)} known vulnerabilities, {len(not_audited)} not audited "
        f"({time.monotonic() - started:.1f} s)"
    )
    return 1 if found else 0


def _version(dep: dict) -> str:
    # pip-audit puts the version in the skip reason: "... could not be audited: NAME (VERSION)"
    return dep.get("version") or dep["skip_reason"].rsplit("(", 1)[-1].rstrip(")")


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # one unreachable package must not hide the others
        return exc


if __name__ == "__main__":
    sys.exit(main())
