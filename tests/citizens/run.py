"""One persona through a fresh conversation on the real app, and the submitted application compared with its facts."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from tests.citizens.answerer import MAX_MESSAGES, Citizen
from tests.citizens.facts import SERVICE_WORDS, SUBSIDIES, Persona

WECHAT_TEXT_LIMIT = 2048  # bytes, UTF-8: what WeChat takes in one text message, either way


@dataclass
class Outcome:
    persona: str
    style: str
    region: str
    completed: bool = False
    messages: int = 0
    refusals: int = 0
    not_understood: int = 0
    mismatches: list[str] = field(default_factory=list)
    transcript: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, sent, reply)
    refused: list[str] = field(default_factory=list)
    puzzled: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None

    @property
    def correct(self) -> bool:
        return self.completed and not self.mismatches

    def text(self, last: int | None = None) -> str:
        lines = [
            f"{self.persona}×{self.style}: completed={self.completed} messages={self.messages} "
            f"refusals={self.refusals} not_understood={self.not_understood}"
        ]
        lines += [f"  mismatch: {m}" for m in self.mismatches]
        rows = self.transcript if last is None else self.transcript[-last:]
        for kind, sent, reply in rows:
            lines.append(f"  > [{kind}] {sent}")
            lines.append("  < " + reply.replace("\n", "\n    "))
        return "\n".join(lines)


async def converse(user, persona: Persona, style: str) -> tuple[Outcome, Citizen, str | None]:
    citizen = Citizen(persona, style)
    outcome = Outcome(persona.key, style, persona.region)
    reference = None
    turn = citizen.opener()
    while turn is not None:
        assert len(turn.text.encode()) <= WECHAT_TEXT_LIMIT, f"the citizen's message is over {WECHAT_TEXT_LIMIT} bytes"
        reply = await (user.voice(turn.text) if turn.kind == "voice" else user.say(turn.text))
        outcome.transcript.append((turn.kind, turn.text, reply))
        assert len(reply.encode()) <= WECHAT_TEXT_LIMIT, f"a reply of {len(reply.encode())} bytes:\n{reply}"
        assert "Traceback" not in reply, reply
        found = re.search(r"申请编号\s*([0-9A-Z]+)", reply)
        if found and "申请已提交" in reply:
            reference = found.group(1)
        if len(outcome.transcript) >= MAX_MESSAGES:
            break
        turn = citizen.answer(reply)
    outcome.messages = len(outcome.transcript)
    outcome.refusals = citizen.refusals
    outcome.not_understood = citizen.not_understood
    outcome.refused = citizen.refused
    outcome.puzzled = citizen.puzzled
    return outcome, citizen, reference


async def run_persona(client, protocol, persona: Persona, style: str, openid: str) -> Outcome:
    """`client` is the real app (tests/conftest.py start_client) of the persona's region."""
    from bot.app import SERVICES
    from tests.conftest import WeChatUser

    user = WeChatUser(client, openid, protocol)
    outcome, citizen, reference = await converse(user, persona, style)
    if reference is None:
        outcome.mismatches.append("no application was submitted")
        return outcome
    document = await client.server.app[SERVICES].outbox.get(reference)
    if document is None:
        outcome.mismatches.append(f"application {reference} is not in the outbox")
        return outcome
    outcome.completed = True
    outcome.document = document
    outcome.mismatches = compare(persona, document, asked=set(citizen._tries))
    return outcome


def compare(p: Persona, doc: dict[str, Any], asked: set[str]) -> list[str]:
    """Field by field: what the application says against the persona's facts. A fact the bot never
    asked may be null in the document (the document says null = not asked); anything else must be equal."""
    wrong: list[str] = []

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            wrong.append(f"{what}: application has {got!r}, the citizen said {want!r}")

    a = doc.get("applicant") or {}
    check("region", doc.get("region"), p.region)
    check("applicant.name", a.get("name"), p.applicant.name)
    check("applicant.id_number", a.get("id_number"), p.applicant.id_number)
    check("applicant.birth_date", a.get("birth_date"), p.applicant.birth.isoformat())
    check("applicant.gender", a.get("gender"), "male" if p.applicant.male else "female")
    check("applicant.phone", a.get("phone"), p.applicant.phone)
    check("applicant.household_address", a.get("household_address"), p.address)
    agent = doc.get("agent")
    if p.agent is None:
        check("agent (applies for themself)", agent, None)
    elif agent is None:
        wrong.append(f"agent: application has none (本人申请), the citizen is the applicant's {p.agent_title} ({p.relation})")
    else:
        check("agent.name", agent.get("name"), p.agent.name)
        check("agent.id_number", agent.get("id_number"), p.agent.id_number)
        check("agent.phone", agent.get("phone"), p.agent.phone)
        check("agent.relation", agent.get("relation"), p.relation)
        check("agent.gender", agent.get("gender"), "male" if p.agent.male else "female")
        if agent.get("residence") is not None or "agent_residence" in asked:
            check("agent.residence", agent.get("residence"), p.agent_residence)
        # only a 法定监护人 is a guardian; a neighbour, 村干部 or a relative helping an adult is an agent
        check("agent.legal_guardian", agent.get("legal_guardian"), p.legal_guardian)
    check("services", sorted(doc.get("services") or []), sorted(p.services))
    disability = doc.get("disability")
    if disability is None:
        if asked & {"category", "level"}:
            wrong.append("disability: null, but the citizen was asked and answered")
    else:
        check("disability.category", disability.get("category"), p.category)
        check("disability.level", disability.get("level"), p.level)
        if disability.get("certificate_no") is not None or "certificate_no" in asked:
            check("disability.certificate_no", disability.get("certificate_no"), p.certificate_no)
        if disability.get("holds_certificate") is not None or "has_certificate" in asked:
            check("disability.holds_certificate", disability.get("holds_certificate"), p.holds_certificate)
        if "disability_certificate" in (doc.get("services") or []):
            request = "renewal" if p.holds_certificate and p.certificate_trouble else "new"
            check("disability.certificate_request", disability.get("certificate_request"), request)
    hardship = doc.get("hardship") or {}
    status = hardship.get("status")
    statuses = hardship.get("statuses") or []
    if statuses or status is not None or "hardship" in asked:
        # every category that applies, no more and no less (and the older `status` one of them)
        check("hardship.statuses", sorted(statuses), sorted(p.hardships))
        if status not in p.hardships:
            wrong.append(f"hardship.status: application has {status!r}, the citizen said {p.hardships!r}")
    if hardship.get("local_hukou") is not None or "hukou" in asked:
        check("hardship.local_hukou", hardship.get("local_hukou"), p.local_hukou)
    if hardship.get("pension_enrolled") is not None or "pension_enrolled" in asked:
        check("hardship.pension_enrolled", hardship.get("pension_enrolled"), p.pension_enrolled)
    if hardship.get("medical_insured") is not None or "medical_insured" in asked:
        check("hardship.medical_insured", hardship.get("medical_insured"), p.medical_insured)
    reasons = hardship.get("subsidy_reasons") or {}
    if reasons or "reason" in asked:
        for code in SUBSIDIES:
            if code in (doc.get("services") or []):
                got = reasons.get(code)
                check(f"hardship.subsidy_reasons.{code}", _said(got), _said(p.subsidy_reasons.get(code)))
    if "household_place" in asked:
        routing = doc.get("routing") or {}
        township, village = p.place
        check("routing.township", routing.get("township"), township)
        check("routing.village", routing.get("village"), village)
    consent = doc.get("consent") or {}
    check("consent.by", consent.get("by"), "applicant" if p.agent is None else "guardian" if p.legal_guardian else "agent")
    return wrong


def _said(text: str | None) -> str | None:
    """Free text as said: width-normalised, without the full stop speech recognition adds."""
    if text is None:
        return None
    return unicodedata.normalize("NFKC", text).strip().rstrip("。.")


def settings_for(redis_url: str, var_dir, region: str):
    """Safe mode with Tencent's sample credentials, as tests/conftest.py's `settings`."""
    from bot.settings import Settings
    from tests.conftest import SAMPLE_AES_KEY, SAMPLE_APPID, SAMPLE_TOKEN, TEST_DATA_KEY

    return Settings(
        wechat_token=SAMPLE_TOKEN,
        wechat_appid=SAMPLE_APPID,
        wechat_encoding_aes_key=SAMPLE_AES_KEY,
        redis_url=redis_url,
        var_dir=var_dir,
        simulator=False,
        data_keys=TEST_DATA_KEY,
        region=region,
    )


NOW = "2026-11-23T10:00:00"


class Apps:
    """The real app of each region, started once (on loopback, safe mode) and shared by the runs."""

    def __init__(self, redis_url: str, var_dir, clock=None) -> None:
        from bot.clock import Clock

        self.redis_url = redis_url
        self.var_dir = var_dir
        self.clock = clock or Clock(frozen_at=Clock().time())
        self.clients: dict[str, Any] = {}
        self.runs = 0

    async def client(self, region: str):
        from tests.conftest import start_client

        if region not in self.clients:
            self.clock.set(NOW)
            self.clients[region] = await start_client(settings_for(self.redis_url, self.var_dir / region, region), self.clock)
        return self.clients[region]

    async def run(self, persona: Persona, style: str) -> Outcome:
        from bot.wechat_protocol import WeChatProtocol
        from tests.conftest import SAMPLE_AES_KEY, SAMPLE_APPID, SAMPLE_TOKEN

        self.clock.set(NOW)  # every conversation on the same Monday morning
        client = await self.client(persona.region)
        self.runs += 1
        openid = f"oCitizen{persona.key}{style}{self.runs:04d}"
        return await run_persona(client, WeChatProtocol(SAMPLE_TOKEN, SAMPLE_APPID, SAMPLE_AES_KEY), persona, style, openid)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        self.clients.clear()


def figures(outcomes: list[Outcome]) -> dict[str, Any]:
    """Completion rate, median and max messages, refusals and not-understood: overall, by style, by region."""
    from statistics import median

    def block(rows: list[Outcome]) -> dict[str, Any]:
        messages = [o.messages for o in rows]
        return {
            "runs": len(rows),
            "completed": sum(o.completed for o in rows),
            "correct": sum(o.correct for o in rows),
            "completion_rate": round(sum(o.completed for o in rows) / len(rows), 3) if rows else None,
            "correct_rate": round(sum(o.correct for o in rows) / len(rows), 3) if rows else None,
            "median_messages": median(messages) if messages else None,
            "max_messages": max(messages) if messages else None,
            "refusals": sum(o.refusals for o in rows),
            "not_understood": sum(o.not_understood for o in rows),
        }

    styles = sorted({o.style for o in outcomes}, key=lambda s: STYLE_ORDER.get(s, 99))
    regions = sorted({o.region for o in outcomes})
    return {
        "all": block(outcomes),
        "by_style": {s: block([o for o in outcomes if o.style == s]) for s in styles},
        "by_region": {r: block([o for o in outcomes if o.region == r]) for r in regions},
        "by_style_region": {
            f"{s}/{r}": block([o for o in outcomes if o.style == s and o.region == r]) for s in styles for r in regions
        },
    }


def table(figs: dict[str, Any]) -> str:
    head = f"{'':22} {'runs':>5} {'complete':>9} {'correct':>8} {'median':>7} {'max':>4} {'refusals':>9} {'not-underst.':>13}"
    lines = [head, "-" * len(head)]

    def row(name: str, b: dict[str, Any]) -> str:
        return (
            f"{name:22} {b['runs']:>5} {b['completion_rate'] * 100:>8.0f}% {b['correct_rate'] * 100:>7.0f}% "
            f"{b['median_messages']:>7} {b['max_messages']:>4} {b['refusals']:>9} {b['not_understood']:>13}"
        )

    for name, b in figs["by_style"].items():
        lines.append(row(name, b))
    lines.append("-" * len(head))
    for name, b in figs["by_region"].items():
        lines.append(row(name, b))
    lines.append("-" * len(head))
    for name, b in figs["by_style_region"].items():
        lines.append(row(name, b))
    lines.append("-" * len(head))
    lines.append(row("all", figs["all"]))
    return "\n".join(lines)


STYLE_ORDER = {"numbers": 0, "words": 1, "voice": 2, "all_in_one": 3, "changes_mind": 4}


def _first_line(reply: str) -> str:
    return reply.strip().splitlines()[0] if reply.strip() else reply


def _sent_after(outcome: Outcome, cue: str) -> tuple[str, str] | None:
    """(what the citizen sent, the bot's answer) right after a reply containing `cue`."""
    for (_, _, before), (_, sent, after) in zip(outcome.transcript, outcome.transcript[1:], strict=False):
        if cue in before:
            return sent, after
    return None


def shortcomings(outcome: Outcome, persona: Persona) -> list[str]:
    """Why a run missed a target, quoted from its transcript (what the citizen sent, what the bot did)."""
    why: list[str] = []
    first = outcome.transcript[0] if outcome.transcript else None
    for m in outcome.mismatches:
        if m.startswith("agent: application has none"):
            if persona.agent is not None and first and "谁申请" not in first[2] and first[1] != "你好":
                why.append(f"one long first message (“{first[1][:24]}…”) is read as the answer to 请问是谁申请: 本人申请")
            else:
                hit = _sent_after(outcome, "谁申请")
                why.append(f"“{hit[0] if hit else '?'}” at 请问是谁申请 is read as 本人申请")
        elif m.startswith("services"):
            hit = _sent_after(outcome, "要办哪些事")
            chosen = re.search(r"您选了：([^。\n]+)", hit[1]) if hit else None
            why.append(
                f"“{hit[0] if hit else '?'}” at 要办哪些事 is read as “{chosen.group(1) if chosen else _first_line(hit[1]) if hit else '?'}”"
            )
        elif m.startswith(("applicant.name", "consent.by")) and any(x.startswith("agent:") for x in outcome.mismatches):
            continue  # follows from being taken as 本人申请
        elif m.startswith("hardship.statuses"):
            hit = _sent_after(outcome, "家里属于哪种情况")
            got = (outcome.document or {}).get("hardship", {}).get("statuses")
            why.append(f"“{hit[0] if hit else '?'}” at 家里属于哪种情况 is recorded as {got}, the family is {persona.hardships}")
        elif m.startswith("hardship.status:") and any(x.startswith("hardship.statuses") for x in outcome.mismatches):
            continue  # the first of the statuses
        elif m.startswith("hardship.subsidy_reasons"):
            hit = _sent_after(outcome, "申请补贴的理由")
            if len(persona.subsidy_reasons) > 1:
                why.append(
                    f"one 申请理由 is asked for {'、'.join(SERVICE_WORDS[c] for c in persona.subsidy_reasons)}: "
                    f"“{hit[0][:30] if hit else '?'}…” is recorded as the reason of each"
                )
            else:
                why.append(m)
        elif m == "no application was submitted":
            last = outcome.transcript[-1] if outcome.transcript else ("", "", "")
            why.append(f"not submitted: after “{last[1][:30]}” the bot still says “{_first_line(last[2])[:40]}”")
        else:
            why.append(m)
    cap = message_cap(persona, outcome.style)
    if cap is not None and outcome.messages > cap:
        why.append(f"a guardian applying for all five needs {outcome.messages} messages > {cap} ({outcome.style})")
    for refused in outcome.refused:
        sent, _, reply = refused.partition(" → ")
        why.append(f"{sent} refused: “{_first_line(reply)[:40]}”")
    if outcome.not_understood:
        why.append(f"the citizen did not understand: “{_first_line(outcome.puzzled[0])[:40]}”")
    seen: list[str] = []
    for w in why:
        if w not in seen:
            seen.append(w)
    return seen


def message_cap(persona: Persona, style: str) -> int | None:
    """The issue's targets: a guardian applying for all five in ≤ 20 messages with numbers, ≤ 25 in words."""
    if persona.agent is None or len(persona.services) != 5:
        return None
    return {"numbers": 20, "words": 25}.get(style)


def targets_missed(outcome: Outcome, persona: Persona) -> list[str]:
    missed = []
    if not outcome.completed:
        missed.append("not completed")
    missed += outcome.mismatches
    if outcome.refusals:
        missed.append(f"{outcome.refusals} refusals")
    if outcome.not_understood:
        missed.append(f"{outcome.not_understood} questions the citizen did not understand")
    cap = message_cap(persona, outcome.style)
    if cap is not None and outcome.messages > cap:
        missed.append(f"{outcome.messages} messages > {cap} (guardian, all five, {outcome.style})")
    return missed
