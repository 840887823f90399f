"""A turn is (session, input) -> (session, reply, effects): nothing outside the conversation changes
while it runs; effects are saved with the session and carried out after, once, even across a crash.

The real dialog, the real conversation store and outbox on the suite's Redis; the crash is the
conversation layer stopping between the save and the effects (what a SIGKILL there leaves behind;
tests/test_faults.py kills real processes at random points on top of this).
"""

from __future__ import annotations

import json
import os

from bot.clock import Clock
from bot.composition import open_services
from dialogs.effects import ReleasePlace, Started, Submit, from_dict
from dialogs.turn import UserInput
from integrations.outbox import STREAM, registration_key
from tests.test_after_submission import MOTHER_CHILD


async def _walk(services, openid: str, script: list[str], clock: Clock):
    """The pure turns of one citizen, the session kept in memory: what each turn asked for."""
    session, effects_by_turn = None, []
    for text in script:
        result = await services.dialog.handle(session, UserInput("text", text), openid, clock.now())
        session = result.session
        effects_by_turn.append((text, result.effects))
    return session, effects_by_turn


async def test_a_turn_changes_nothing_outside_the_conversation_it_returns_effects(settings, clock, redis_client):
    async with open_services(settings, clock=clock) as services:
        openid = f"oEffects{os.getpid()}"
        session, effects_by_turn = await _walk(services, openid, MOTHER_CHILD, clock)
        kinds = [[type(e).__name__ for e in effects] for _, effects in effects_by_turn]
        assert kinds[1] == ["Started"]  # the first answer: remind gently if left unfinished
        assert kinds[-1] == ["Submit"]  # consent: register and queue
        assert all(k == [] for k in kinds[2:-1])
        assert session is not None and session["state"] == "submitted"
        # Nothing was written outside the conversation by the turns themselves:
        assert await redis_client.xlen(STREAM) == 0
        assert await services.registry.visible_to(openid) == []
        assert await services.reminders.scheduled() == []
        # Effects are data: they survive a round trip through JSON (they are saved with the session).
        for _, effects in effects_by_turn:
            for e in effects:
                assert from_dict(json.loads(json.dumps(e.to_dict()))) == e


async def test_effects_saved_with_the_session_are_carried_out_by_the_sweeper_after_a_crash(settings, clock, redis_client):
    async with open_services(settings, clock=clock) as services:
        openid = f"oCrash{os.getpid()}"
        session, effects_by_turn = await _walk(services, openid, MOTHER_CHILD, clock)
        submit = effects_by_turn[-1][1][0]
        assert isinstance(submit, Submit)
        app_id = submit.document["id"]
        async with services.store.turn(openid, (1, 1), "m-final", wait_s=1) as turn:
            await services.store.save(turn, session, "申请已提交", [submit], at=clock.time())
        # ...and the process dies here, before the conversation layer carries the effects out.
        assert await services.registry.visible_to(openid) == []
        assert await redis_client.xlen(STREAM) == 0
        assert await services.effects.sweep() == 0  # a live turn gets 30 s to do its own
        clock.advance(31)
        assert await services.effects.sweep() == 1
        views = await services.registry.visible_to(openid)
        assert [v.id for v in views] == [app_id]
        assert set(views[0].status) == set(submit.document["services"])
        assert await redis_client.xlen(STREAM) == 1
        assert not await redis_client.exists(registration_key(app_id))
        # Again, and the turn's own run arriving late: nothing twice.
        clock.advance(31)
        assert await services.effects.sweep() == 0
        await services.effects.carry_out(submit)
        assert await redis_client.xlen(STREAM) == 1
        assert await services.store.pending_effects(openid) == []


async def test_the_next_turn_carries_out_what_a_crash_left_with_its_own(settings, clock, redis_client):
    """A turn runs the effects it just saved without reading them back, but only when its save says they
    are all that is pending; effects a crash left before it are read back and carried out with its own."""
    async with open_services(settings, clock=clock) as services:
        openid = f"oLeftOver{os.getpid()}"
        session, effects_by_turn = await _walk(services, openid, MOTHER_CHILD, clock)
        submit = effects_by_turn[-1][1][0]
        assert isinstance(submit, Submit)
        async with services.store.turn(openid, (1, 1), "m-crash", wait_s=1) as turn:
            assert await services.store.save(turn, session, "申请已提交", [submit], at=clock.time()) == 1
        # ...the process died before carrying it out; the citizen's next turn asks for something too.
        started = Started(openid, "QY-other", clock.now().isoformat(timespec="seconds"))
        async with services.store.turn(openid, (2, 2), "m-next", wait_s=1) as turn:
            assert await services.store.save(turn, session, "好的", [started], at=clock.time()) == 2
        assert await services.effects.run(openid) == 2
        assert [v.id for v in await services.registry.visible_to(openid)] == [submit.document["id"]]
        assert await redis_client.xlen(STREAM) == 1
        assert await services.store.pending_effects(openid) == []


async def test_the_registry_knows_an_application_before_the_intake_can_receive_it(settings, clock, redis_client):
    """Queued but not yet registered (a crash right after the atomic submit): the delivery worker
    completes the registration before it posts."""
    async with open_services(settings, clock=clock) as services:
        openid = f"oQueued{os.getpid()}"
        _, effects_by_turn = await _walk(services, openid, MOTHER_CHILD, clock)
        submit = effects_by_turn[-1][1][0]
        registration = {"openid": openid, "expected": submit.expected, "waitlist": None}
        assert await services.outbox.submit(submit.document, registration)
        assert not await services.outbox.submit(submit.document, registration)  # a retry queues nothing
        assert await services.registry.visible_to(openid) == []
        seen_by_intake: list[list[str]] = []

        async def before_send(app_id, document):
            await services.effects.complete_registration(app_id, document)
            seen_by_intake.append([v.id for v in await services.registry.visible_to(openid)])

        await before_send(submit.document["id"], await services.outbox.get(submit.document["id"]))
        assert seen_by_intake == [[submit.document["id"]]]
        assert await services.outbox.registration(submit.document["id"]) is None


async def test_a_changed_date_and_a_restart_give_places_back_only_as_effects(settings, clock):
    async with open_services(settings, clock=clock) as services:
        openid = f"oPlaces{os.getpid()}"
        script = MOTHER_CHILD[: MOTHER_CHILD.index("0") + 2]  # up to and including the booking
        session, effects_by_turn = await _walk(services, openid, script, clock)
        assert session is not None and session["data"].get("booking")
        booked = session["data"]["booking"]["session_date"]
        reference = session["data"]["reference"]
        assert await services.book.holders(booked) == [reference]  # a place is claimed while the turn runs
        result = await services.dialog.handle(session, UserInput("text", "重新开始"), openid, clock.now())
        assert result.effects == [ReleasePlace(booked, reference)]
        assert await services.book.holders(booked) == [reference]  # not given back yet
        for effect in result.effects:
            await services.effects.carry_out(effect)
        assert await services.book.holders(booked) == []
        assert all(isinstance(e, Started) for _, effects in effects_by_turn for e in effects)
