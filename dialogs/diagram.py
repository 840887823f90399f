"""The application flow drawn as a Mermaid state diagram, generated from the machine's own data.

`python -m dialogs.diagram` rewrites docs/application-flow.md; a test fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transitions.extensions import GraphMachine

from dialogs.application import INITIAL, STEPS, TRANSITIONS
from dialogs.interceptors import table

DIAGRAM_FILE = Path(__file__).resolve().parent.parent / "docs" / "application-flow.md"


def mermaid() -> str:
    class _Model:
        get_graph: Any  # added by GraphMachine

    model = _Model()
    GraphMachine(
        model=model,
        states=[s.name for s in STEPS],
        transitions=TRANSITIONS,
        initial=INITIAL,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="Application flow",
    )
    return model.get_graph().draw(None).rstrip() + "\n"


def interceptor_table() -> str:
    rows = "".join(f"| {n} | `{name}` | {doc} |\n" for n, (name, doc) in enumerate(table(), 1))
    return "| # | interceptor | takes |\n|---|---|---|\n" + rows


def told() -> str:
    """The steps told, not asked, where a question follows them (Step.told_with)."""
    lines = "".join(
        f"- `{s.name}` is said in the same message as `{'`, `'.join(sorted(s.told_with))}` when that is the next\n"
        "  question asked, and passed without an answer of its own; elsewhere it is asked as a step.\n"
        for s in STEPS
        if s.told_with
    )
    return "Told, not asked:\n\n" + lines + "\n" if lines else ""


def document() -> str:
    return (
        "# The application flow\n\n"
        "Generated from `dialogs/application.py` and `dialogs/interceptors.py` by `python -m dialogs.diagram`;\n"
        "do not edit by hand.\n\n"
        "## Before a message is an answer\n\n"
        "Each message is offered to these interceptors in order; the first that takes it answers, and the\n"
        "current step stays where it is (except for the commands that move it: 返回, 重新开始, a correction).\n"
        "A message none of them takes is the answer to the current step.\n\n" + interceptor_table() + "\n"
        "## The steps\n\n"
        "An answer fires `next`. Then `skip` is fired for as long as it applies: a step is skipped when its\n"
        "condition is false (`[!condition]`) or when the application already holds its answer (`[answered]`:\n"
        "said earlier, or in a message with several facts). The summary (with the declaration, confirmed by\n"
        "the same answer) and the consent are always asked.\n\n" + told() + "```mermaid\n" + mermaid() + "```\n"
    )


if __name__ == "__main__":
    DIAGRAM_FILE.parent.mkdir(exist_ok=True)
    DIAGRAM_FILE.write_text(document(), encoding="utf-8")
    sys.stdout.write(f"wrote {DIAGRAM_FILE}\n")
