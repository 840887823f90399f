"""Where a safe-mode turn's CPU goes, stage by stage, in one process (no load generator).

    python benchmarks/turn_cost.py [--turns 3000] [--redis-url redis://127.0.0.1:6379/15] [--profile 25]

One simulated user walks the benchmark's dialog cycle through the real components the server
uses: the WeChat protocol (signature, AES, XML), the conversation store (two Redis round trips),
the dialog, and the reply's encryption. Each stage's CPU time (time.process_time, so waiting on
Redis is not counted) is summed over the turns and printed per turn, next to the same turn
through the real aiohttp handler with an in-process client. Use it to see what a change buys;
bench.py gives the figures under load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import AES_KEY, APPID, BENCH_DATA_KEY, DIALOG_CYCLE, TOKEN  # noqa: E402

from bot.clock import Clock  # noqa: E402
from bot.composition import open_services  # noqa: E402
from bot.conversation import ConversationService  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.wechat_protocol import WeChatProtocol, message_xml  # noqa: E402


class Stages:
    def __init__(self):
        self.cpu = defaultdict(float)

    def timed(self, name):
        stages = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.process_time()

            def __exit__(self, *exc):
                stages.cpu[name] += time.process_time() - self.t0

        return _Timer()


async def run(turns: int, redis_url: str, profile: int = 0) -> None:
    var = Path(tempfile.mkdtemp(prefix="turn-cost-"))
    settings = Settings(
        wechat_token=TOKEN,
        wechat_appid=APPID,
        wechat_encoding_aes_key=AES_KEY,
        redis_url=redis_url,
        var_dir=var,
        simulator=False,
        data_keys=BENCH_DATA_KEY if redis_url else "",  # fixed: a second run opens the first one's canary
    )
    clock = Clock()
    protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
    async with open_services(settings, clock=clock) as services:
        conversation = ConversationService(
            services.store,
            services.dialog,
            services.pack,
            Metrics.create(),
            deadline_s=4.0,
            clock=clock,
            effects=services.effects,
        )
        store, dialog = services.store, services.dialog
        run_id = time.time_ns()
        requests = []
        for i in range(turns):
            xml = message_xml(
                from_user=f"cost-{run_id}-{i // 500}",
                to_user="gh",
                content=DIALOG_CYCLE[i % len(DIALOG_CYCLE)],
                msg_id=10_000_000 + i,
                create_time=int(time.time()),
            )
            requests.append(protocol.build_request(xml, encrypted=True))

        stages = Stages()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for query, body in requests:
            with stages.timed("1 parse: signature, AES, XML"):
                message, encrypted = protocol.parse(query, body)
            with stages.timed("2 store: lock + load (Redis)"):
                cm = store.turn(message.from_user, message.order, message.dedup_id, wait_s=3.5)
                turn = await cm.__aenter__()
            with stages.timed("3 dialog"):
                user_input = conversation.channel.input(message, conversation.menu)
                assert user_input is not None
                result = await dialog.handle(turn.session, user_input, message.from_user, clock.now())
                session, reply = result.session, result.reply
            with stages.timed("4 store: save + unlock (Redis)"):
                assert session is not None
                await store.save(turn, session, reply, result.effects)
                await cm.__aexit__(None, None, None)
            with stages.timed("5 render: XML, AES, signature"):
                protocol.render_text(message, reply, encrypted)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)

        print(f"{turns} turns, one user at a time; CPU per turn by stage:")
        for name in sorted(stages.cpu):
            print(f"  {name:34s} {1000 * stages.cpu[name] / turns:6.3f} ms")
        print(f"  {'total':34s} {1000 * cpu / turns:6.3f} ms   (wall {1000 * wall / turns:.3f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--redis-url", default="", help="default: embedded Redis")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions (slows every stage)"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args.turns, args.redis_url, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
