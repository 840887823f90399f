"""The benchmark's dialog cycle (benchmarks/bench.py DIALOG_CYCLE) walks the dialog as it is today.

The cycle is the work every throughput figure measures: when the flow changes and an answer of the
cycle is refused instead of taken, the benchmark quietly measures re-asked questions. Each answer of
the cycle must move the form on; each command must be taken as that command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.composition import open_services
from dialogs.turn import UserInput

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench import DIALOG_CYCLE


async def test_every_answer_of_the_benchmark_cycle_moves_the_form_on(settings, clock):
    async with open_services(settings, clock=clock) as services:
        dialog, session = services.dialog, None
        for text in DIALOG_CYCLE:
            before = len(session["history"]) if session else 0
            result = await dialog.handle(session, UserInput("text", text), "oBenchCycle", clock.now())
            session = result.session
            assert session is not None
            command = dialog.command_in(text)
            if command is None:
                assert len(session["history"]) == before + 1, (text, result.reply)
            elif command == "restart":
                assert session["history"] == [], result.reply
        assert session["state"] == "who"
