"""Carrying out what a turn asked for (dialogs/effects.py), once its session is saved.

The conversation store saves a turn's effects with its session, in the same script
(integrations/conversations.py), and lists the citizen in a pending index before that. Right
after the save the conversation layer runs them and clears them; a crash in between leaves them
pending, and `sweep` (run by every serving process) carries them out later. Each effect is
idempotent, so a sweep that races a live turn does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from dialogs.effects import Effect, ReleasePlace, Started, Submit
from integrations.applications import ApplicationRegistry
from integrations.assessment_book import RedisAssessmentBook
from integrations.conversations import ConversationStore
from integrations.outbox import RedisOutbox

log = logging.getLogger(__name__)

# A turn runs its own effects within milliseconds of its save; older pending ones were left by a crash.
SWEEP_AFTER_S = 30


class EffectRunner:
    def __init__(
        self,
        outbox: RedisOutbox,
        registry: ApplicationRegistry,
        book: RedisAssessmentBook,
        notifier: Any,  # bot.notifications.Notifier (not imported: it imports this module's neighbours)
        store: ConversationStore,
        *,
        clock,
    ):
        self.outbox = outbox
        self.registry = registry
        self.book = book
        self.notifier = notifier
        self.store = store
        self.clock = clock

    async def run(self, openid: str, *, only: Sequence[Effect] | None = None) -> int:
        """Carry out every effect saved for this citizen (a crash may have left older ones), then
        forget them; the number carried out. `only`: the turn that just saved them knows they are all
        there is (its save said so), and they need not be read back."""
        since = self.clock()
        effects = list(only) if only is not None else await self.store.pending_effects(openid)
        for effect in effects:
            await self.carry_out(effect)
        await self.store.effects_done(openid, len(effects), since)
        return len(effects)

    async def carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Submit):
            registration = {"openid": effect.openid, "expected": effect.expected, "waitlist": effect.waitlist}
            await self.outbox.submit(effect.document, registration)
            await self.complete_registration(effect.document["id"])
        elif isinstance(effect, ReleasePlace):
            await self.book.release(effect.session_date, effect.holder)
        elif isinstance(effect, Started):
            await self.notifier.schedule_unfinished(effect.openid, effect.reference, datetime.fromisoformat(effect.at))
        else:  # pragma: no cover - a new kind of effect without its handler is a bug
            raise TypeError(f"no handler for effect {effect!r}")

    async def complete_registration(self, app_id: str, document: dict[str, Any] | None = None) -> None:
        """Record a queued application in the registry, with its reminders and waitlist place, once.
        Also called by the delivery worker before it sends an application to the intake."""
        registration = await self.outbox.registration(app_id)
        if registration is None:
            return  # recorded already (or queued before registrations were kept beside the document)
        document = document or await self.outbox.get(app_id)
        if document is None:
            return
        await self.registry.register(document, registration["openid"], expected=registration["expected"])
        await self.notifier.reminders.cancel(f"unfinished:{app_id}")
        # Told once, a day after submitting, if it has still not reached the intake by then.
        submitted_at = datetime.fromisoformat(document["submitted_at"])
        await self.notifier.reminders.schedule(
            f"delivery-late:{app_id}",
            (submitted_at + timedelta(days=1)).timestamp(),
            {"kind": "delivery_late", "app_id": app_id},
        )
        appointment = document.get("appointment")
        if appointment and appointment.get("session_date"):
            materials = self.notifier.assessment_materials(document)
            await self.notifier.schedule_assessment_reminders(app_id, appointment, materials)
        if registration.get("waitlist"):
            await self.book.join_waitlist(registration["waitlist"], app_id)
        await self.outbox.registration_done(app_id)

    async def sweep(self, *, limit: int = 50) -> int:
        """Carry out effects a crash left pending; the number of citizens whose effects were run."""
        done = 0
        for openid in await self.store.pending_effects_of(self.clock() - SWEEP_AFTER_S, limit=limit):
            count = await self.run(openid)
            if count:
                log.warning("carried out %d effect(s) left pending by an interrupted turn", count)
                done += 1
        return done
