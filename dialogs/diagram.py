"""The application flow drawn as a Mermaid state diagram, generated from the machine's own data.

`python -m dialogs.diagram` rewrites docs/application-flow.md; a test fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transitions.extensions import GraphMachine

from dialogs.application import INITIAL, STEPS, TRANSITIONS

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
    source = model.get_graph().draw(None).rstrip()
    notes = [f"  note right of {s.name} : asked only if {s.ask_if}" for s in STEPS if s.ask_if]
    return source + "\n" + "\n".join(notes) + "\n"


def document() -> str:
    return (
        "# The application flow\n\n"
        "Generated from `dialogs/application.py` by `python -m dialogs.diagram`; do not edit by hand.\n"
        "Every step fires `next`; a step whose `asked only if` condition is false is skipped.\n"
        "Global commands (帮助, 返回, 重新开始, 人工, 进度, 为什么) and edits at the summary\n"
        '("改电话") jump outside these arrows and come back.\n\n'
        "```mermaid\n" + mermaid() + "```\n"
    )


if __name__ == "__main__":
    DIAGRAM_FILE.parent.mkdir(exist_ok=True)
    DIAGRAM_FILE.write_text(document(), encoding="utf-8")
    sys.stdout.write(f"wrote {DIAGRAM_FILE}\n")
