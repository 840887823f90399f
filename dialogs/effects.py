"""What a turn asks the world to do, as data: the dialog decides, the conversation layer acts.

A turn returns its effects instead of calling out while it runs. The conversation layer saves
the session together with the effects (integrations/conversations.py), then carries them out
(bot/effects.py); effects left by a crash between the two are carried out by a sweeper. So every
effect is idempotent: carrying one out twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Effect:
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Submit(Effect):
    """Register the application and queue its delivery to the intake (one atomic Redis step)."""

    kind: ClassVar[str] = "submit"
    document: dict[str, Any]
    openid: str
    expected: dict[str, str | None] = field(default_factory=dict)
    waitlist: str | None = None  # e.g. "mental": the half-yearly session is not announced yet


@dataclass(frozen=True)
class ReleasePlace(Effect):
    """Give back a place at an assessment session (changed date, dropped service, restart)."""

    kind: ClassVar[str] = "release_place"
    session_date: str
    holder: str


@dataclass(frozen=True)
class Started(Effect):
    """An application was begun: remind gently if it is left unfinished."""

    kind: ClassVar[str] = "started"
    openid: str
    reference: str
    at: str  # ISO time of the turn


KINDS: dict[str, type[Effect]] = {cls.kind: cls for cls in (Submit, ReleasePlace, Started)}


def from_dict(raw: dict[str, Any]) -> Effect:
    values = dict(raw)
    cls = KINDS[values.pop("kind")]
    return cls(**values)
