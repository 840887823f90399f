"""Several facts in one message, who is applying, and corrections at any step.

"你好，我是曹国庆，帮我女儿巴特尔申请，我是她爸爸，她身份证…，我的电话…，想办护理补贴" holds a dozen
answers. `extract` finds every slot a message states unambiguously; `read` (called by the engine before
the current step's reader) fills those not answered yet through the steps' own readers (so each is
validated exactly as when asked alone), says back in one line what it kept, and lets the flow skip
what is answered. A correction ("不对，是二级", "电话写错了，应该是139…") goes back to the slot it names,
or takes the new value when it carries one. The vocabulary is content (lexicon.yaml: who,
correction_words, edit_targets); this module holds the mechanism.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from dialogs.application import STEPS, At, Step
from dialogs.pack import Pack
from dialogs.turn import Outcome, Turn, UserInput
from dialogs.understanding import compact
from dialogs.validators import ValidationError, mask_id, mask_phone, parse_name, spoken_digits

# A person answering a question does not write hundreds of characters: longer texts are not read for
# slots or for who is applying (a pasted article holds 自己 and 父亲 somewhere), and are never cut.
MAX_CHARS = 300
MIN_CHARS = 6  # shorter than "王大山1391…": never two slots
STEP = {s.name: s for s in STEPS}
# Steps whose answer is the citizen's own words (an address, a reason; not a name, which comes with
# other facts: "我爸叫王大山，身份证…"): only an explicit correction is taken there.
FREE_TEXT = {s.name for s in STEPS if s.free_text and not s.answer.startswith("name:")}
# The steps asked whatever is known (the summary and after): the edit words ("改电话") and their own answers apply.
AFTER_FORM = {s.name for s in STEPS if s.always_ask}
# A slot said about "the phone" or "the ID" belongs to whichever of these was asked last.
FAMILIES = ((At.applicant_phone, At.agent_phone), (At.applicant_id, At.agent_id), (At.applicant_name, At.agent_name))

_HAN = "\u4e00-\u9fff"
_ID = re.compile(r"(?<![0-9])([0-9]{17}[0-9Xx])(?![0-9A-Za-z])")
_CERT = re.compile(r"(?<![0-9])([0-9]{20})(?![0-9])")
_MOBILE = re.compile(r"(?<![0-9])(1[3-9][0-9]{9})(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])(0[0-9]{2,3}-?[2-9][0-9]{6,7})(?![0-9])")
_SPACED_MOBILE = re.compile(r"(?<![0-9])(1[3-9][0-9])[\s-]([0-9]{4})[\s-]([0-9]{4})(?![0-9])")  # 139 1234 5678
_SPOKEN_NUMBER = re.compile(r"[0-9零〇一二三四五六七八九幺两]{7,}叉?")  # voice: "幺三九…"
_CLAUSE = re.compile(r"[，,。.；;！!？?\n]")
_LEVEL = re.compile(r"(?:残疾|等级|评定为?|是)?([一二三四1234两])级")
_PRONOUN = re.compile(r"[他她]")
_FIRST_PERSON = re.compile(r"我|俺")
# Where a name stops: punctuation, or a word that goes on the sentence.
_NAME_END = rf"(?=[^{_HAN}·]|$|帮|替|给|为|代|申请|办|想|要|的|是|住|电话|手机|身份证|今年|残疾)"
_NAME = rf"([{_HAN}]{{2,4}}?(?:·[{_HAN}]{{1,8}})?)"
_NOT_NAMES = ("残疾", "申请", "本人", "监护", "代办", "自己", "低保", "特困", "家人", "别人", "我们", "大家")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "")


def _alternatives(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


@dataclass
class Who:
    who: str  # self | agent
    relation: str | None = None  # the agent's relation to the applicant (questions.yaml agent_relation)
    title: str | None = None  # how the agent calls the applicant: 父亲


@dataclass
class Slots:
    who: Who | None = None
    agent_name: str | None = None
    applicant_name: str | None = None
    ids: dict[str, str] = field(default_factory=dict)  # applicant | agent → the number as written
    phones: dict[str, str] = field(default_factory=dict)
    certificate_no: str | None = None
    services: list[str] = field(default_factory=list)
    category: int | None = None
    level: int | None = None
    hardship: str | None = None  # the words, read by the hardship question's own reader
    local_hukou: bool | None = None
    household_address: str | None = None

    def steps(self, who: str | None) -> list[str]:
        """The steps these slots answer."""
        agent = (self.who.who if self.who else who) == "agent"
        named = {
            At.who: self.who,
            At.agent_name: self.agent_name if agent else None,
            At.applicant_name: self.applicant_name,
            At.certificate_no: self.certificate_no,
            At.choose_services: self.services or None,
            At.fact_disability_category: self.category,
            At.fact_disability_level: self.level,
            At.fact_hardship_status: self.hardship,
            At.fact_local_hukou: self.local_hukou,
            At.household_address: self.household_address,
        }
        found: list[str] = [name for name, value in named.items() if value is not None]
        found += [At(f"{owner}_id") for owner in self.ids if agent or owner == "applicant"]
        found += [At(f"{owner}_phone") for owner in self.phones if agent or owner == "applicant"]
        return found


class Vocabulary:
    """The lexicon's words for who is applying, compiled once per pack."""

    def __init__(self, pack: Pack) -> None:
        lex = pack.lexicon
        who = lex["who"]
        self.applicant_title = {w: rel for rel, ws in who["applicant_titles"].items() for w in ws}
        self.agent_title = {w: rel for rel, ws in who["agent_titles"].items() for w in ws}
        titles = _alternatives(list(self.applicant_title))
        mine = r"(?:我的|我家的|我家|我们家|我|俺家|俺|咱家|咱)"
        # "帮我父亲", "替我家孩子", "给老伴": the title after a helping verb; "我爸", "我家孩子": after "my".
        self.for_title = re.compile(rf"(?:帮|替|给|为|代){mine}?({titles})")
        self.my_title = re.compile(rf"{mine}({titles})")
        self.title_name = re.compile(rf"(?:{titles})(?:叫|是|名叫|名字叫|名字是)?{_NAME}{_NAME_END}")
        self.i_am = re.compile(rf"我是(?:[他她]的?|申请人的?)?({_alternatives(list(self.agent_title))})")
        self.agent_words = [w for w in who["agent_words"]]
        self.self_words = [w for w in who["self_words"]]
        self.correction_words = [w.lower() for w in lex["correction_words"]]
        self.markers = re.compile("|".join(re.escape(m) for m in sorted(lex["correction_markers"], key=len, reverse=True)))
        self.edit_targets = {w.lower(): state for state, ws in lex["edit_targets"].items() for w in ws}
        q = pack.questions
        self.categories = {o["label"]: o["value"] for o in q[At.fact_disability_category]["options"]}
        hardship_q = q[At.fact_hardship_status]
        self.hardship_words = [
            w for o in [*hardship_q["options"], *hardship_q.get("unnumbered", [])] if o["value"] != "none" for w in o["words"]
        ]
        self.all_words = q[At.choose_services]["all_words"]
        self.none_words = next(o["words"] for o in hardship_q["options"] if o["value"] == "none")


_VOCABULARIES: dict[int, Vocabulary] = {}


def vocabulary(pack: Pack) -> Vocabulary:
    v = _VOCABULARIES.get(id(pack.lexicon))
    if v is None:
        v = _VOCABULARIES[id(pack.lexicon)] = Vocabulary(pack)
    return v


# -- who is applying ----------------------------------------------------------------------------------
def who_from(text: str, pack: Pack) -> Who | None:
    """Who applies, from what was said: 我/本人/自己 for themself, 帮/替/给 + a relation for someone else.

    None when the words do not say (a greeting, "我想办理扶残助困的事情", a long text): asked again."""
    t = compact(text)
    if not t or len(t) > MAX_CHARS:
        return None
    v = vocabulary(pack)
    title = None
    m = v.for_title.search(t) or v.my_title.search(t)
    if m:
        title = m.group(1)
    i_am = v.i_am.search(t)
    if i_am:
        return Who("agent", v.agent_title[i_am.group(1)], title)
    if title:
        return Who("agent", v.applicant_title[title], title)
    agent = any(w in t for w in v.agent_words)
    own = any(w in t for w in v.self_words)
    if agent != own:
        return Who("agent") if agent else Who("self")
    return None


# -- every slot in a message ----------------------------------------------------------------------------
def extract(turn: Turn, text: str) -> Slots:
    """The slots `text` states unambiguously (nothing validated yet: `read` validates each as asked alone)."""
    slots = Slots()
    t = _SPACED_MOBILE.sub(r"\1\2\3", _SPOKEN_NUMBER.sub(lambda m: spoken_digits(m.group()).replace("叉", "X"), _norm(text)))
    if len(t) > MAX_CHARS:
        return slots
    v = vocabulary(turn.pack)
    who = who_from(t, turn.pack)
    slots.who = who
    agent = (who.who if who else turn.data.get("who")) == "agent"
    clauses = [c for c in _CLAUSE.split(t) if c.strip()]
    # names: the agent's own ("我是曹国庆"), the applicant's after what the agent calls them ("帮我女儿巴特尔")
    for m in re.finditer(rf"(?:我是|我叫|我的名字是|我的名字叫|我姓名|本人){_NAME}{_NAME_END}", t):
        name = _a_name(m.group(1), v)
        if name:
            if agent:
                slots.agent_name = slots.agent_name or name
            else:
                slots.applicant_name = slots.applicant_name or name
            break
    # "我叫王大山，身份证…，住…": about themself, and nobody else is named
    alone = not (_PRONOUN.search(t) or v.my_title.search(t) or v.for_title.search(t))
    if who is None and not turn.data.get("who") and slots.applicant_name and _ID.search(t) and alone:
        slots.who = Who("self")
    if agent:
        called = v.title_name.search(t)
        if called:
            slots.applicant_name = _a_name(called.group(1), v)
    # numbers: whose, by the words before them in their clause ("她身份证…", "我的电话…")
    for pattern, found in ((_CERT, None), (_ID, slots.ids), (_MOBILE, slots.phones), (_LANDLINE, slots.phones)):
        for m in pattern.finditer(t):
            if found is None:
                slots.certificate_no = m.group(1)
                continue
            owner = _owner(t, m.start(), agent, v)
            if owner and owner not in found:
                found[owner] = m.group(1)
    if agent:
        for found in (slots.ids, slots.phones):
            _by_order(t, found, (_ID if found is slots.ids else _MOBILE))
    slots.services = turn.lang.services_in(t)
    if not slots.services and any(w in t for w in v.all_words) and re.search(r"[五5]项|全部|所有|都办|都要办", t):
        slots.services = list(turn.pack.services)  # "五项都要办"
    labels = [value for label, value in v.categories.items() if label in t]
    if len(set(labels)) == 1:
        slots.category = labels[0]
    levels = {_level_digit(m.group(1)) for m in _LEVEL.finditer(t)}
    if len(levels) == 1:
        slots.level = levels.pop()
    slots.hardship = _hardship(clauses, v)
    county = turn.pack.name
    if re.search(rf"户口(?:就|也)?(?:在|是)(?:本地|本县|本市|这里|{re.escape(county)})|本地户口", t):
        slots.local_hukou = True
    elif re.search(r"户口(?:不在|在外地|是外地)|外地户口", t):
        slots.local_hukou = False
    for c in clauses:
        lives = re.match(
            r"\s*(?:[他她]|申请人)?(?:户籍地址|户口地址|户口本上的地址|家住|我家住|我住|住在|住址|住)[是为在:：]?(.{5,})$", c
        )
        if lives and (not agent or not _FIRST_PERSON.search(c)):
            slots.household_address = lives.group(1).strip()
            break
    return slots


def _hardship(clauses: list[str], v: Vocabulary) -> str | None:
    """The words about the family's hardship, for the hardship question's reader; "都不是" when each is
    denied ("家里不是低保也不是特困")."""
    parts = [p for c in clauses for p in re.split(r"[也又还]", c) if any(w in p for w in v.hardship_words)]
    if not parts:
        return None
    said = [p for p in parts if not re.search(r"不是|没有|不属于|没|非|无", p)]
    if not said:
        return v.none_words[0]
    return "，".join(said)


def _a_name(candidate: str, v: Vocabulary) -> str | None:
    if candidate[0] in "他她您你的我" or candidate in v.applicant_title or candidate in v.agent_title:
        return None
    if any(w in candidate for w in _NOT_NAMES) or any(candidate.startswith(w) for w in v.applicant_title):
        return None
    try:
        return parse_name(candidate)
    except ValidationError:
        return None


def _owner(t: str, start: int, agent: bool, v: Vocabulary) -> str | None:
    """Whose number starts at `start`: "applicant", "agent", or None when the words do not say.

    The words before it in its clause ("她身份证…", "我的电话…"), else the person the sentence was about
    ("我爸叫王大山，身份证…")."""
    if not agent:
        return "applicant"
    for before in reversed(_CLAUSE.split(t[:start])):
        about = _about(before, v)
        if about != "nobody":
            return about
    return None


def _about(clause: str, v: Vocabulary) -> str | None:
    """Whom a clause is about: "applicant" (她, 我爸, 申请人), "agent" (我), "nobody", or None for both."""
    mine = v.my_title.sub("", clause)
    third = mine != clause or _PRONOUN.search(clause) or "申请人" in clause or any(w in clause for w in v.applicant_title)
    first = bool(_FIRST_PERSON.search(mine)) or "代办人" in clause
    if third and first:
        return None
    return "applicant" if third else "agent" if first else "nobody"


def _by_order(t: str, found: dict[str, str], pattern: re.Pattern[str]) -> None:
    """Two numbers, one of them placed by its words: the other one is the other person's."""
    numbers = [m.group(1) for m in pattern.finditer(t)]
    if len(numbers) == 2 and len(found) == 1:
        (owner, _number), other = next(iter(found.items())), [n for n in numbers if n not in found.values()]
        if other:
            found["agent" if owner == "applicant" else "applicant"] = other[0]


def _level_digit(c: str) -> int:
    return {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4}.get(c) or int(c)


# -- filling them in --------------------------------------------------------------------------------------
async def read(turn: Turn, step: Step, inp: UserInput, session: dict[str, Any]) -> Outcome | None:
    """A correction, or several slots at once; None leaves the message to the step's own reader."""
    text = inp.text.strip() if inp.kind in ("text", "voice") else ""
    if not text or len(text) > MAX_CHARS or step.name == At.submitted:
        return None
    fixed = await correction(turn, step, text, session)
    if fixed is not None:
        return fixed
    if step.name in FREE_TEXT or step.name in AFTER_FORM:
        return None
    t = compact(text)
    if len(t) < MIN_CHARS or t.rstrip("x").isdigit():
        return None  # "1 3", "张三", one number alone: one answer, for the step's reader
    slots = extract(turn, text)
    from dialogs.engine import answered

    new = [name for name in slots.steps(turn.data.get("who")) if not answered(STEP[name], turn.case)]
    if not [name for name in new if name != step.name]:
        return None  # only this step's own answer: its reader reads it
    said = await fill(turn, slots)
    if not said:
        return None
    line = turn.pack.q("slots", "noted", items="，".join(said))
    if answered(step, turn.case):
        return Outcome.ok(line)
    # "王大山，身份证…" at the name, "是的，她肢体残疾二级" at a yes/no: the first words answer the question
    first = next((c.strip() for c in _CLAUSE.split(_norm(text)) if c.strip()), "")
    if first and first != text.strip():
        from dialogs.answers import read_answer

        outcome = await read_answer(turn, step, UserInput("text", first))
        if outcome.advance:
            return Outcome.ok(line, *outcome.say)
    return Outcome.stay(line, reprompt=True)


async def fill(turn: Turn, slots: Slots) -> list[str]:
    """Store what is not answered yet, each through its step's reader; what was kept, for the echo."""
    from dialogs.answers import READERS
    from dialogs.engine import answered

    q = turn.pack.questions["slots"]
    data = turn.data
    said: list[str] = []

    async def take(step_name: str, value: str) -> bool:
        step = STEP[step_name]
        if answered(step, turn.case):
            return False
        kind, _, path = step.answer.partition(":")
        outcome = await READERS[kind](turn, step, UserInput("text", value), path)
        return outcome.advance

    who = slots.who if slots.who and not data.get("who") else None
    if who:
        data["who"] = who.who
        if who.who == "self":
            data.pop("agent", None)
        else:
            agent = data.setdefault("agent", {})
            if who.relation:
                agent["relation"] = who.relation
            if who.title:
                agent["applicant_title"] = who.title
    agent = data.get("who") == "agent"
    if agent and slots.agent_name and await take(At.agent_name, slots.agent_name):
        said.append(q["you_are"].format(name=slots.agent_name))
    name = None
    if slots.applicant_name and data.get("who") and await take(At.applicant_name, slots.applicant_name):
        name = slots.applicant_name
    if who and who.who == "self":
        said.append(q["you_are"].format(name=name) if name else q["self"])
    elif who:
        said.append(q["for_someone"].format(who=who.title or ("" if name else q["someone"]), name=name or ""))
    elif name:
        said.append(q["applicant"].format(who=applicant_called(turn), name=name) if agent else q["you_are"].format(name=name))
    for owner, number in slots.ids.items():
        if owner == "agent" and not agent:
            continue
        if await take(f"{owner}_id", number):
            said.append(q["id"].format(whose=_whose(turn, owner), id=mask_id(data[owner]["id_number"])))
    for owner, number in slots.phones.items():
        if owner == "agent" and not agent:
            continue
        if await take(f"{owner}_phone" if owner == "agent" else "applicant_phone", number):
            said.append(q["phone"].format(whose=_whose(turn, owner), phone=mask_phone(data[owner]["phone"])))
    if slots.household_address and await take(At.household_address, slots.household_address):
        said.append(q["address"].format(address=data["applicant"]["household_address"]))
    facts = turn.case.facts
    disability = ""
    if slots.category is not None and "disability_category" not in facts:
        facts["disability_category"] = slots.category
        disability = next(k for k, val in vocabulary(turn.pack).categories.items() if val == slots.category)
    if slots.level is not None and "disability_level" not in facts:
        facts["disability_level"] = slots.level
        disability += q["level"].format(level="一二三四"[slots.level - 1])
    if disability:
        said.append(disability)
    if slots.hardship and "hardship_status" not in facts and await take(At.fact_hardship_status, slots.hardship):
        said.append(_hardship_label(turn, facts["hardship_status"]))
    if slots.local_hukou is not None and "local_hukou" not in facts:
        facts["local_hukou"] = slots.local_hukou
        said.append(turn.pack.q("slots", "local" if slots.local_hukou else "not_local"))
    if slots.services and not turn.case.services and not data.get("guided"):
        names = "、".join(turn.pack.services[c].short for c in slots.services)
        if await take(At.choose_services, names):
            said.append(q["services"].format(services=names))
    if slots.certificate_no and await take(At.certificate_no, slots.certificate_no):
        said.append(q["certificate"].format(number=mask_id(slots.certificate_no)))
    return said


def _hardship_label(turn: Turn, value: Any) -> str:
    options = turn.pack.questions[At.fact_hardship_status]
    labels = {o["value"]: o["label"] for o in [*options["options"], *options.get("unnumbered", [])]}
    values = value if isinstance(value, list) else [value]
    return "、".join(labels.get(x, str(x)) for x in values)


def applicant_called(turn: Turn) -> str:
    """How the questions name the applicant: "您" for oneself, "您父亲", "这位村民" when the agent said so,
    else "申请人"."""
    q = turn.pack.questions["slots"]
    if turn.data.get("who") == "self":
        return q["applicant_self"]
    agent = turn.data.get("agent", {}) if turn.data.get("who") == "agent" else {}
    title = agent.get("applicant_title")
    if not title:
        return q["applicant_word"]
    return q["called_other" if agent.get("relation") == "other" else "called"].format(title=title)


def _whose(turn: Turn, owner: str) -> str:
    if owner == "agent" or turn.data.get("who") != "agent":
        return turn.pack.questions["slots"]["yours"]
    return applicant_called(turn) + "的"


# -- corrections --------------------------------------------------------------------------------------------
async def correction(turn: Turn, step: Step, text: str, session: dict[str, Any]) -> Outcome | None:
    """ "不对，是二级" at a later step: the slot it names (or its value's kind), answered before, changed."""
    v = vocabulary(turn.pack)
    t = compact(text)
    if not any(w in t for w in v.correction_words):
        return None
    history = session.get("history", [])
    target = _target(turn, t, text, history, v)
    if target is None or target == step.name:
        return None
    value = _value_after_marker(_norm(text), v)
    target_step = STEP[target]
    kind, _, path = target_step.answer.partition(":")
    from dialogs.answers import READERS
    from dialogs.prompts import prompt

    if value:
        outcome = await READERS[kind](turn, target_step, UserInput("text", value), path)
        if outcome.advance:
            return Outcome.stay(turn.pack.q("slots", "corrected"), reprompt=True)
    session["editing"] = True
    session["state"] = target
    return Outcome.stay(turn.pack.q("slots", "correct_it"), await prompt(turn, target), reprompt=False)


def _target(turn: Turn, t: str, text: str, history: list[str], v: Vocabulary) -> str | None:
    named = [(w, s) for w, s in v.edit_targets.items() if w in t]
    target = max(named, key=lambda ws: len(ws[0]))[1] if named else None
    if target is None:
        norm = _norm(text)
        if _MOBILE.search(norm) or _LANDLINE.search(norm):
            target = "applicant_phone"
        elif _CERT.search(norm):
            target = "certificate_no"
        elif _ID.search(norm):
            target = "applicant_id"
        elif _LEVEL.search(norm):
            target = "fact_disability_level"
        elif any(label in norm for label in v.categories) or re.search(r"(视力|听力|言语|肢体|智力|精神|多重)", norm):
            target = "fact_disability_category"
        elif any(w in norm for w in v.hardship_words):
            target = "fact_hardship_status"
    if target is None:
        return None
    for family in FAMILIES:
        if target in family:
            asked = [s for s in history if s in family]
            target = asked[-1] if asked else target
    return target if target in history else None


def _value_after_marker(text: str, v: Vocabulary) -> str:
    found = list(v.markers.finditer(text))
    if not found:
        return text
    return text[found[-1].end() :].strip(" ，,。.：:")


def read_who(turn: Turn, step: Step, inp: UserInput) -> Outcome:
    """The first question: an option number, or who by meaning; asked again when the words do not say."""
    options = turn.pack.questions[step.name]["options"]
    n = turn.lang.number(inp.text)
    if n is not None:
        option = options[n - 1] if 1 <= n <= len(options) else None
        who = Who(option["value"], option.get("relation")) if option else None
    else:
        who = who_from(inp.text, turn.pack)
    if who is None:
        return Outcome.invalid(turn.pack.q("slots", "who_unclear"))
    data = turn.data
    data["who"] = who.who
    if who.who == "self":
        data.pop("agent", None)
        return Outcome.ok()
    agent = data.setdefault("agent", {})
    if who.relation:
        agent["relation"] = who.relation
        agent.pop("applicant_title", None)
    if who.title:
        agent["applicant_title"] = who.title
        return Outcome.ok(turn.pack.q("slots", "for_title_said", title=who.title))
    return Outcome.ok()


__all__ = ["Who", "Slots", "who_from", "extract", "read", "fill", "correction", "applicant_called", "read_who"]
