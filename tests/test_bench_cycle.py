"""The benchmarks' scripted citizens walk the dialog as it is today.

The throughput cycle (benchmarks/bench.py DIALOG_CYCLE) is the work every throughput figure measures, and
the memory and soak citizens (benchmarks/scenarios.py) follow transcripts 01 and 03: when the flow
changes and an answer of theirs is refused instead of taken, a benchmark quietly measures re-asked
questions (the soak once ran 30 minutes of citizens stuck at the fourth message). Each answer of the
cycle must move the form on; each scripted reply must say what the script expects.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.composition import open_services
from dialogs.turn import UserInput

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench import DIALOG_CYCLE
from scenarios import application_script, in_progress_script


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


async def test_the_memory_and_soak_citizens_follow_todays_dialog(settings, clock):
    async with open_services(settings, clock=clock) as services:
        for name, script in (("in_progress", in_progress_script(7)), ("application", application_script(7))):
            session = None
            for text, expected in script:
                result = await services.dialog.handle(session, UserInput("text", text), f"oScript{name}", clock.now())
                session = result.session
                assert expected is None or expected in result.reply, (name, text, expected, result.reply)
