"""A simulated citizen: reads the bot's latest reply and answers it as a person would.

It knows only its facts (tests/citizens/facts.py) and what is on the screen: the reply text, and the
option lists printed in it ("1 本人申请\n2 替家人申请"). It never imports the bot, its step names, flow
tables or content files. It recognises what is asked by plain-language cues, answers in its style,
says "啥意思？" to what it does not understand, and counts the times the bot refused an answer a person
would give (the bot asked the same thing again, saying it did not understand or wanting a number).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tests.citizens.facts import CATEGORIES, CERTIFICATE_TROUBLE, HARDSHIPS, LEVEL_WORDS, SERVICE_WORDS, SERVICES, Persona

MAX_MESSAGES = 60

# What a person reads as "it did not take my answer": a re-ask with one of these.
REFUSAL_CUES = (
    "请回复数字",
    "请回复选项",
    "选项前面的数字",
    "事项前的数字",
    "没看懂",
    "没听懂",
    "没听清",
    "请再发一次",
    "请核对",
    "不对",
    "应为",
    "请发",
    "请多写",
)

CN_DIGITS = "零一二三四五六七八九"
LEVEL_CN = {1: "一", 2: "二", 3: "三", 4: "四"}

# How the citizen recognises an option on the screen for each of its facts (words it looks for in a label).
SERVICE_LABEL = {
    "disability_certificate": ("残疾人证", "残疾证"),
    "living_subsidy": ("生活补贴",),
    "nursing_subsidy": ("护理补贴",),
    "medical_assistance": ("医疗救助",),
    "pension_subsidy": ("养老保险",),
}
RELATION_LABEL = {
    "parent": ("父母",),
    "child": ("子女",),
    "spouse": ("配偶",),
    "sibling": ("兄弟姐妹",),
    "relative": ("其他亲属", "亲属"),
    "other": ("其他代理人", "代理人"),
}
# How a person applying for someone else finds themself in a "who is applying" list, by whom they apply for.
WHO_LABEL = {
    "parent": ("孩子", "子女"),
    "child": ("父亲", "母亲", "父母"),
    "spouse": ("配偶", "老伴"),
    "sibling": ("兄弟姐妹",),
    "relative": ("亲属",),
    "other": ("代办", "别人"),
}
HARDSHIP_LABEL = {code: (label,) for code, label in HARDSHIPS.items()}
# What a person says in words
HARDSHIP_SAY = {
    "dibao_urban": "城镇低保户",
    "dibao_rural": "农村低保户",
    "tekun": "特困户",
    "dibao_edge": "低保边缘户",
    "tuopin": "脱贫户",
    "monitored": "防返贫监测户",
    "illness_poverty": "因病致贫",
    "none": "都不是",
    "returned_to_poverty": "返贫户",
}
CATEGORY_SAY = {
    1: "眼睛看不见，视力残疾",
    2: "耳朵听不见，听力残疾",
    3: "说话不行，言语残疾",
    4: "腿脚不好，肢体残疾",
    5: "智力残疾",
    6: "精神残疾",
    7: "多重残疾",
}


def options(reply: str) -> list[tuple[str, str]]:
    """The numbered options printed in the reply, as a person sees them: [("1", "本人申请"), ...]."""
    found: list[tuple[str, str]] = []
    for line in reply.splitlines():
        m = re.match(r"\s*(\d{1,2})[\s.、：:]+(.+?)\s*$", line)
        if m:
            found.append((m.group(1), m.group(2)))
    for m in re.finditer(r"回复\s*(\d)\s*([^；;，,。\n]+)", reply):
        found.append((m.group(1), m.group(2)))
    return found


def pick(reply: str, wanted: tuple[str, ...]) -> str | None:
    """The number of the first option whose label contains one of `wanted`."""
    for number, label in options(reply):
        if any(w in label for w in wanted):
            return number
    return None


def spoken_digits(number: str) -> str:
    """An ID or phone number as speech recognition writes it when said digit by digit."""
    return "".join(CN_DIGITS[int(c)] if c.isdigit() else c for c in number)


@dataclass
class Turn:
    kind: str  # "say" | "voice"
    text: str
    topic: str


@dataclass
class Citizen:
    persona: Persona
    style: str
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    sent: int = 0
    refusals: int = 0
    not_understood: int = 0
    refused: list[str] = field(default_factory=list)  # the bot's replies that refused an answer
    puzzled: list[str] = field(default_factory=list)  # the bot's replies the citizen did not understand
    done: bool = False
    _last_topic: str | None = None
    _last_text: str = ""
    _tries: dict[str, int] = field(default_factory=dict)
    _mind_changed: bool = False
    _pending_correction: str | None = None
    _summary_fixes: int = 0
    _puzzled_in_a_row: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.persona.key}:{self.style}")
        p = self.persona
        # changes_mind: which answer the citizen gets wrong once and then corrects
        self.mind_topic = None
        if self.style == "changes_mind":
            choices = ["phone", "category"] + (["level"] if p.level is not None else [])
            self.mind_topic = choices[int(p.key[1:]) % len(choices)]

    # -- the person: what is being asked ---------------------------------------------------------
    @classmethod
    def topic_of(cls, reply: str) -> str | None:
        """What the reply asks, by plain-language cues: the last question in it counts (from its last line
        with a question mark, options included), else the whole reply."""
        lines = reply.splitlines()
        asks = [
            i for i, line in enumerate(lines) if ("？" in line or "?" in line) and not re.match(r"\s*\d{1,2}[\s.、：:]", line)
        ]
        if asks and asks[-1] > 0:
            topic = cls._topic_in("\n".join(lines[asks[-1] :]))
            if topic is not None:
                return topic
        return cls._topic_in(reply)

    @staticmethod
    def _topic_in(q: str) -> str | None:
        if "申请已提交" in q or "已提交。查进度" in q:
            return "submitted"
        if "请核对" in q:
            return "summary"
        if "材料" in q and ("回复 0" in q or "回复0" in q or "材料编号" in q):
            return "materials"
        if "请选日期" in q or "约满" in q or ("评定" in q and "回复 0" in q):
            return "booking"
        if "声明" in q:
            return "declaration"
        if "同意吗" in q or "同意并提交" in q:
            return "consent"
        if "法定监护人" in q and "吗" in q:
            return "guardian"
        if "谁申请" in q:
            return "who"
        if "什么人" in q or "关系" in q:
            return "relation"
        if "建议办理" in q or "暂时没有符合条件" in q:
            return "suggest"
        if "仍然申请" in q or "不办这几项" in q:
            return "insist"
        if "残疾人证号" in q or "残疾证号" in q:
            return "certificate_no"
        if "理由" in q:
            return "reason"
        if "邮寄地址" in q:
            return "mail_address"
        if "怎么领" in q:
            return "delivery"
        if "居住" in q and ("地址" in q or "住在" in q):
            return "agent_residence"
        if "乡镇" in q and "村" in q and ("告诉我" in q or "没看出" in q):
            return "household_place"
        if "地址" in q:
            return "address"
        if "姓名" in q:
            return "agent_name" if "代办人" in q else "applicant_name"
        if "身份证号" in q:
            if "申请人" in q:
                return "applicant_id"
            return "agent_id" if "代办人" in q else "applicant_id"
        if "手机号" in q or "电话" in q:
            if "申请人" in q:
                return "applicant_phone"
            return "agent_phone" if "代办人" in q else "applicant_phone"
        if "哪些事" in q or "办什么" in q:
            return "services"
        if "户口" in q or "户籍" in q:
            return "hukou"
        if "残疾人证" in q and "吗" in q:
            return "has_certificate"
        if "哪类残疾" in q or "残疾类别" in q:
            return "category"
        if "几级" in q or "等级" in q:
            return "level"
        if "几个数字" in q and "哪种情况" not in q and ("在校" in q or "保险" in q):
            return "which_apply"  # several of the person's own facts in one list: those that apply are picked
        if "在校" in q or "学生" in q or "上学" in q:
            return "in_school"
        if "职工" in q and "养老" in q:
            return "employee_pension"
        if "养老保险" in q and "参加" in q:
            return "pension_enrolled"
        if "医疗保险" in q and "参加" in q:
            return "medical_insured"
        if "哪种情况" in q or "困难" in q:
            return "hardship"
        return None

    # -- the person: what to send ----------------------------------------------------------------
    def opener(self) -> Turn:
        if self.style != "all_in_one":
            return self._turn("你好", None)
        return self._turn(self.everything_at_once(), "who")

    def everything_at_once(self) -> str:
        """One long message with what they came for, as people write it."""
        p = self.persona
        a = p.applicant
        wants = self.services_words()
        if p.agent is None:
            return (
                f"你好，我叫{a.name}，身份证{a.id_number}，电话{a.phone}，住{p.address}，"
                f"{CATEGORIES[p.category]}残疾{self.level_words()}，{self.hardship_words()}，{wants}"
            )
        he = "他" if a.male else "她"
        return (
            f"你好，我是{p.agent.name}，帮我{p.applicant_title}{a.name}申请，我是{he}{p.agent_title}，"
            f"{he}身份证{a.id_number}，我的电话{p.agent.phone}，{he}{CATEGORIES[p.category]}残疾{self.level_words()}，"
            f"{self.hardship_words()}，{wants}"
        )

    def hardship_words(self) -> str:
        """Every hardship category the family is in, as people say it."""
        h = self.persona.hardships
        if h == ["none"]:
            return "家里不是低保也不是特困"
        if len(h) == 1:
            return "家里是" + HARDSHIP_SAY[h[0]]
        return "家里是" + HARDSHIP_SAY[h[0]] + "，也是" + "、".join(HARDSHIP_SAY[x] for x in h[1:])

    def level_words(self) -> str:
        return LEVEL_WORDS[self.persona.level] if self.persona.level else "，还没评定等级"

    def services_words(self) -> str:
        s = self.persona.services
        if len(s) == len(SERVICES):
            return "五项都要办"
        names = [SERVICE_WORDS[x] for x in s]
        if len(names) == 1:
            return "想办" + names[0]
        both = "、".join(names[:-1]) + "和" + names[-1]
        return both + "都要办" if int(self.persona.key[1:]) % 2 == 0 else "我想办" + both

    def answer(self, reply: str) -> Turn | None:
        """What the person sends after reading `reply`; None when they are done (or give up)."""
        if self.sent >= MAX_MESSAGES:
            return None
        topic = self.topic_of(reply)
        if topic == "submitted":
            self.done = True
            return None
        if self._pending_correction and topic != "summary":
            text, self._pending_correction = self._pending_correction, None
            return self._turn(text, "correction")
        again = topic is not None and topic == self._last_topic and self._last_topic not in ("materials", "correction")
        if again and any(cue in reply for cue in REFUSAL_CUES):
            self.refusals += 1
            self.refused.append(f"{self._last_text!r} → {reply}")
        tries = self._tries[topic or "?"] = self._tries.get(topic or "?", 0) + 1 if again else 0
        if topic is None:
            self.not_understood += 1
            self.puzzled.append(reply)
            self._puzzled_in_a_row += 1
            if self._puzzled_in_a_row > 2:
                return None
            return self._turn("啥意思？" if self._puzzled_in_a_row == 1 else "我不懂，你再说一遍", None)
        self._puzzled_in_a_row = 0
        if tries >= 4:
            return None  # a person gives up after being refused again and again
        words, number = self.reply_for(topic, reply)
        # numbers style sends the number; others say it; when refused, try the other way
        use_number = self.style == "numbers"
        if tries % 2 == 1:
            use_number = not use_number
        text = number if (use_number and number) else (words or number or "啥意思？")
        if topic == "summary" and self._summary_fixes < 3:
            fix = self.summary_fix(reply)
            if fix:
                self._summary_fixes += 1
                text = fix
        return self._turn(text, topic)

    def _turn(self, text: str, topic: str | None) -> Turn:
        self.sent += 1
        self._last_topic = topic
        if self.style == "voice":
            # homophone slips only where the bot could tell (not in names and addresses it must take as said)
            text = self.slip(
                text,
                free_text=topic
                in ("address", "mail_address", "applicant_name", "agent_name", "reason", "agent_residence", "household_place"),
            )
        self._last_text = text
        return Turn("voice" if self.style == "voice" else "say", text, topic or "?")

    def slip(self, text: str, free_text: bool = False) -> str:
        """What speech recognition makes of it: full stop, and now and then a homophone slip."""
        if text.isdigit() and len(text) > 6 and self.rng.random() < 0.5:
            text = spoken_digits(text)
        out = text
        if free_text:
            return out + "。"
        if "级" in out and self.rng.random() < 0.5:
            out = out.replace("级", "及")
        if "二" in out and self.rng.random() < 0.5:
            out = out.replace("二", "两")
        if "补贴" in out and self.rng.random() < 0.4:
            out = out.replace("补贴", "不贴", 1)
        return out if out.endswith(("。", "？", "！")) else out + "。"

    # -- answers from the facts: (words, option number) ------------------------------------------
    def reply_for(self, topic: str, reply: str) -> tuple[str | None, str | None]:
        p = self.persona
        a = p.applicant
        he = "他" if a.male else "她"
        mind = self.mind_topic == topic and not self._mind_changed
        if topic == "who":
            if p.agent is None:
                return "我自己申请", pick(reply, ("本人",))
            # a list that names relations: the one that is theirs ("替父亲或母亲申请" for a son); else "替家人"
            return f"帮我{p.applicant_title}申请", pick(reply, WHO_LABEL[p.relation or "other"]) or pick(
                reply, ("替家人", "家人", "代理")
            )
        if topic == "relation":
            if p.relation == "other":
                return f"我是{p.agent_title}", pick(reply, RELATION_LABEL["other"])
            return f"我是{he}{p.agent_title}", pick(reply, RELATION_LABEL[p.relation or "other"])
        if topic == "agent_name":
            return (p.agent.name if p.agent else a.name), None
        if topic == "applicant_name":
            if p.agent is not None and "申请人" not in reply:
                return p.agent.name, None  # "请发您的姓名": a person sends their own name
            return a.name, None
        if topic == "agent_id":
            return (p.agent.id_number if p.agent else a.id_number), None
        if topic == "applicant_id":
            return a.id_number, None
        if topic in ("agent_phone", "applicant_phone"):
            own = p.agent.phone if (p.agent and topic == "agent_phone") else a.phone
            if topic == "applicant_phone" and p.agent and a.phone == p.agent.phone and "同上" in reply:
                return "同上", None
            if self.mind_topic == "phone" and not self._mind_changed and (topic == "agent_phone" or p.agent is None):
                self._mind_changed = True
                wrong = own[:-2] + own[-1] + own[-2] if own[-1] != own[-2] else own[:-1] + str((int(own[-1]) + 1) % 10)
                self._pending_correction = f"电话写错了，应该是{own}"
                return wrong, None
            return own, None
        if topic == "services":
            if len(p.services) == len(SERVICES):
                number = pick(reply, ("全部",))
            else:
                nums = [pick(reply, SERVICE_LABEL[s]) for s in p.services]
                number = " ".join(n for n in nums if n) if all(nums) else None
            return self.services_words(), number
        if topic == "suggest":
            return "我自己重新选", pick(reply, ("重新选", "自己"))
        if topic == "insist":
            return "还是要申请", pick(reply, ("仍然", "申请"))
        if topic == "hukou":
            if p.local_hukou:
                return f"户口就在{p.home_county}", pick(reply, ("是",))
            return "不在，户口在外地", pick(reply, ("不是",))
        if topic == "has_certificate":
            if p.holds_certificate and p.certificate_trouble:
                trouble = CERTIFICATE_TROUBLE[p.certificate_trouble]
                words = f"有证，但是{trouble}" + ("" if p.certificate_trouble == "reassess" else "，要补办")
                return words, pick(reply, ("丢了", "坏了", "重新评定", "补办"))
            if p.holds_certificate:
                return "有残疾证", pick(reply, ("有",))
            return "还没有办", pick(reply, ("没有",))
        if topic == "guardian":
            if p.legal_guardian:
                return f"是，我是{he}的监护人", pick(reply, ("是",))
            return "不是，只是帮忙办", pick(reply, ("不是",))
        if topic == "in_school":
            return ("是，在上学", pick(reply, ("是",))) if p.in_school else ("不是学生", pick(reply, ("不是",)))
        if topic == "which_apply":
            return self.which_apply(reply)
        if topic == "employee_pension":
            if p.employee_pension:
                return "参加了，单位给交的", pick(reply, ("参加了",))
            return "没有参加", pick(reply, ("没参加",))
        if topic == "agent_residence":
            return (p.agent_residence or p.address), None
        if topic == "household_place":
            township, village = p.place
            return township + village, None
        if topic == "category":
            cat = p.category
            if mind:
                self._mind_changed = True
                wrong = cat % 7 + 1
                self._pending_correction = f"不对，刚才说错了，是{CATEGORIES[cat]}残疾"
                cat = wrong
            return CATEGORY_SAY[cat], pick(reply, (CATEGORIES[cat],))
        if topic == "level":
            level = p.level
            if mind and level is not None:
                self._mind_changed = True
                wrong = level % 4 + 1
                self._pending_correction = f"不对，是{LEVEL_WORDS[level]}"
                level = wrong
            if level is None:
                return "还没评定", pick(reply, ("没评定", "不知道"))
            return LEVEL_WORDS[level], pick(reply, (LEVEL_WORDS[level],))
        if topic == "hardship":
            first = p.hardships[0]
            words = self.hardship_words() if first != "none" else "都不是"
            nums = [pick(reply, HARDSHIP_LABEL[h]) for h in p.hardships]
            return words, " ".join(n for n in nums if n) if all(nums) else None
        if topic == "pension_enrolled":
            return ("参加了", pick(reply, ("参加了",))) if p.pension_enrolled else ("没参加", pick(reply, ("没参加",)))
        if topic == "medical_insured":
            return ("参加了", pick(reply, ("参加了",))) if p.medical_insured else ("没参加", pick(reply, ("没参加",)))
        if topic == "address":
            return p.address, None
        if topic == "certificate_no":
            return p.certificate_no or "还没有证", None
        if topic == "reason":
            reasons = p.subsidy_reasons
            if len(reasons) == 1:
                return next(iter(reasons.values())), None
            if reasons:
                return "；".join(f"{SERVICE_WORDS[code]}：{why}" for code, why in reasons.items()), None
            return "家庭困难", None
        if topic == "delivery":
            if p.delivery != "mail":
                return "我自己去拿", pick(reply, ("自取",))
            # the option that says where, when one does ("邮寄到户籍地址" / "邮寄到别的地址")
            where = ("户籍地址",) if p.mail_address is None else ("别的地址", "其他地址")
            if p.agent is not None and p.mail_address and p.mail_address == p.agent_residence:
                where = ("居住地址",)  # to where they live themself, when the list offers it
            return "寄到家里", pick(reply, where) or pick(reply, ("邮寄",))
        if topic == "mail_address":
            return (p.mail_address or "同上"), None
        if topic == "materials":
            return "好的，到时候带来", "0"
        if topic == "booking":
            if "回复 0" in reply and not re.search(r"\d+月\d+日", reply):
                return "好的", "0"
            slots = [(n, label) for n, label in options(reply) if re.search(r"\d+月\d+日", label)]
            if not slots:
                return "第一个", "1"
            n, label = slots[0]
            return re.search(r"\d+月\d+日", label).group(0), n
        if topic == "summary":
            return "没问题", pick(reply, ("没问题",)) or "1"
        if topic == "declaration":
            return "好的，我确认", pick(reply, ("确认",))
        if topic == "consent":
            if any("监护人" in label for _, label in options(reply)):  # who consents is asked with it
                if p.legal_guardian:
                    return f"同意，我是{he}的监护人", pick(reply, ("法定监护人",))
                return "同意，我只是帮忙代办", pick(reply, ("帮忙代办", "代办"))
            return "同意", pick(reply, ("同意",))
        return None, None

    def which_apply(self, reply: str) -> tuple[str | None, str | None]:
        """A list of things that may be true of the applicant: the person picks those that are, by
        their label's words, or the "none of these" line."""
        p = self.persona
        said = {
            ("在校", "学生"): (p.in_school, "是在校学生"),
            ("职工",): (p.employee_pension, "参加了职工养老保险，单位给交的"),
            ("医疗保险",): (p.medical_insured, "参加了医疗保险"),
            ("养老保险",): (p.pension_enrolled, "参加了城乡居民养老保险"),
        }
        picked, words, none = [], [], None
        for number, label in options(reply):
            if "都没有" in label or "都不是" in label:
                none = number
                continue
            for cues, (true, saying) in said.items():
                if any(c in label for c in cues):
                    if true:
                        picked.append(number)
                        words.append(saying)
                    break
        if picked:
            return "，".join(words), " ".join(picked)
        return "都没有", none

    def summary_fix(self, reply: str) -> str | None:
        """A careful person reads the summary and asks to change what is wrong."""
        p = self.persona
        if p.applicant.phone not in reply and p.applicant.phone[-4:] not in reply:
            return "改电话"
        if "category" in self._tries and CATEGORIES[p.category] not in reply:
            return "改残疾类别"
        if "level" in self._tries and p.level and LEVEL_WORDS[p.level] not in reply:
            return "改残疾等级"
        return None
