"""Persona facts, and a deterministic generator of varied personas.

Nothing here knows the bot: the facts are what a citizen knows about themself and their family.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

TODAY = date(2026, 11, 23)  # the clock of the suite (tests/test_citizens.py freezes the app there)

STYLES = ("numbers", "words", "voice", "all_in_one", "changes_mind")

REGIONS = {
    # region: (county name as people say it, the county codes of its ID numbers, home addresses, addresses elsewhere)
    "qingyang": (
        "青阳县",
        ["341723"],
        [
            "青阳县蓉城镇五溪村12号",
            "青阳县木镇镇木镇村3组8号",
            "青阳县新河镇新河社区建设路21号",
            "青阳县陵阳镇陵阳村桥头组5号",
            "青阳县丁桥镇丁桥村中街16号",
            "青阳县庙前镇庙前村上屋组2号",
        ],
        ["安徽省池州市贵池区秋浦街道长江路8号", "安徽省铜陵市义安区五松镇团结村4号"],
    ),
    "hulunbuir": (
        "呼伦贝尔市",
        ["150702", "150781", "150783", "150721"],
        [
            "内蒙古呼伦贝尔市海拉尔区胜利街道10号",
            "内蒙古呼伦贝尔市满洲里市东山街道二道街15号",
            "内蒙古呼伦贝尔市扎兰屯市兴华街道光明路7号",
            "内蒙古呼伦贝尔市阿荣旗那吉镇建设街3号",
        ],
        ["内蒙古兴安盟乌兰浩特市和平街道5号", "黑龙江省齐齐哈尔市龙沙区五龙街道9号"],
    ),
}

CATEGORIES = {1: "视力", 2: "听力", 3: "言语", 4: "肢体", 5: "智力", 6: "精神", 7: "多重"}
LEVEL_WORDS = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}

# What the citizen calls each hardship (the outbox codes are what the application must say).
HARDSHIPS = {
    "dibao_urban": "城镇低保",
    "dibao_rural": "农村低保",
    "tekun": "特困人员",
    "dibao_edge": "低保边缘家庭",
    "tuopin": "脱贫人口",
    "monitored": "防止返贫监测对象",
    "illness_poverty": "因病致贫重病患者",
    "none": "都不是",
    "returned_to_poverty": "返贫致贫人口",
}
# The generator's cycle of first hardships (returned_to_poverty is given to a few personas afterwards,
# so that adding it did not change the others).
HARDSHIP_CYCLE = ["dibao_urban", "dibao_rural", "tekun", "dibao_edge", "tuopin", "monitored", "illness_poverty", "none"]

# The 乡镇（街道） and 村（社区） of each address, as the people living there name them.
PLACES = {
    "青阳县蓉城镇五溪村12号": ("蓉城镇", "五溪村"),
    "青阳县木镇镇木镇村3组8号": ("木镇镇", "木镇村"),
    "青阳县新河镇新河社区建设路21号": ("新河镇", "新河社区"),
    "青阳县陵阳镇陵阳村桥头组5号": ("陵阳镇", "陵阳村"),
    "青阳县丁桥镇丁桥村中街16号": ("丁桥镇", "丁桥村"),
    "青阳县庙前镇庙前村上屋组2号": ("庙前镇", "庙前村"),
    "安徽省池州市贵池区秋浦街道长江路8号": ("秋浦街道", "长江社区"),
    "安徽省铜陵市义安区五松镇团结村4号": ("五松镇", "团结村"),
    "内蒙古呼伦贝尔市海拉尔区胜利街道10号": ("胜利街道", "西大街社区"),
    "内蒙古呼伦贝尔市满洲里市东山街道二道街15号": ("东山街道", "二道街社区"),
    "内蒙古呼伦贝尔市扎兰屯市兴华街道光明路7号": ("兴华街道", "光明社区"),
    "内蒙古呼伦贝尔市阿荣旗那吉镇建设街3号": ("那吉镇", "建设社区"),
    "内蒙古兴安盟乌兰浩特市和平街道5号": ("和平街道", "和平社区"),
    "黑龙江省齐齐哈尔市龙沙区五龙街道9号": ("五龙街道", "五龙社区"),
}

# What a holder says when the certificate needs 补办/换领/重新评定.
CERTIFICATE_TROUBLE = {"lost": "丢了", "damaged": "坏了", "reassess": "要重新评定"}
SUBSIDIES = ("living_subsidy", "nursing_subsidy")

SERVICES = ("disability_certificate", "living_subsidy", "nursing_subsidy", "medical_assistance", "pension_subsidy")
SERVICE_WORDS = {
    "disability_certificate": "残疾证",
    "living_subsidy": "生活补贴",
    "nursing_subsidy": "护理补贴",
    "medical_assistance": "医疗救助",
    "pension_subsidy": "养老保险补助",
}

# relation code: (how the agent names themself, how they call the applicant, the applicant's age range)
RELATIONS = {
    # the calling: (for a male applicant, for a female applicant)
    "parent": (["妈妈", "爸爸"], [("儿子", "女儿")], (4, 30)),
    "child": (["儿子", "女儿"], [("父亲", "母亲"), ("爸爸", "妈妈")], (62, 88)),
    "spouse": (["老伴", "爱人"], [("老伴", "老伴"), ("爱人", "爱人")], (45, 80)),
    "sibling": (["哥哥", "姐姐", "弟弟", "妹妹"], [("弟弟", "妹妹"), ("哥哥", "姐姐")], (25, 60)),
    "relative": (["孙子", "侄子", "外甥女"], [("爷爷", "奶奶"), ("舅舅", "姑姑")], (60, 85)),
    "other": (["村干部", "邻居", "网格员"], [("邻居", "邻居"), ("村民", "村民")], (35, 85)),
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙朱胡郭何高林罗郑梁谢宋唐韩曹许邓冯"
GIVEN = [
    "大山",
    "秀英",
    "小宝",
    "建国",
    "桂兰",
    "志强",
    "玉梅",
    "海燕",
    "德福",
    "春花",
    "明亮",
    "淑珍",
    "金凤",
    "国庆",
    "小军",
    "丽娟",
    "文斌",
    "巧云",
    "长林",
    "雪梅",
    "振华",
    "翠兰",
    "宏伟",
    "晓东",
]
MONGOLIAN = ["巴特尔", "其其格", "乌云", "苏和", "阿拉坦", "斯琴", "额尔敦", "萨仁"]

_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def id_check_digit(first17: str) -> str:
    """GB 11643-1999: ISO 7064 MOD 11-2."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=False)) % 11]


def make_id(rng: random.Random, county: str, birth: date, male: bool) -> str:
    seq = rng.randrange(0, 100) * 10 + rng.choice([1, 3, 5, 7, 9] if male else [0, 2, 4, 6, 8])
    first17 = f"{county}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_digit(first17)


def id_is_valid(number: str) -> bool:
    return len(number) == 18 and number[:17].isdigit() and id_check_digit(number[:17]) == number[17]


def birth_for_age(rng: random.Random, age: int) -> date:
    """A birth date of someone exactly `age` years old on TODAY."""
    latest = TODAY.replace(year=TODAY.year - age)  # TODAY is not 29 February
    earliest = TODAY.replace(year=TODAY.year - age - 1).toordinal() + 1
    return date.fromordinal(rng.randint(earliest, latest.toordinal()))


def age_on(birth: date, day: date = TODAY) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def make_phone(rng: random.Random) -> str:
    return rng.choice(["138", "139", "150", "151", "158", "177", "186", "189"]) + f"{rng.randrange(10**8):08d}"


@dataclass
class Person:
    name: str
    id_number: str
    phone: str

    @property
    def birth(self) -> date:
        return date(int(self.id_number[6:10]), int(self.id_number[10:12]), int(self.id_number[12:14]))

    @property
    def male(self) -> bool:
        return int(self.id_number[16]) % 2 == 1


@dataclass
class Persona:
    key: str
    region: str
    applicant: Person
    address: str
    local_hukou: bool
    category: int  # 1 视力 … 7 多重
    level: int | None  # 1…4, None = not yet assessed
    holds_certificate: bool
    hardships: list[str]  # hardship codes, first = the one they think of first; ["none"] = none
    services: list[str]  # what they want, in SERVICES order
    relation: str | None = None  # None = applies for themself
    agent: Person | None = None
    agent_title: str = ""  # how the agent names themself: 妈妈, 儿子, 村干部 ...
    applicant_title: str = ""  # how the agent calls the applicant: 儿子, 父亲 ...
    pension_enrolled: bool = True  # 城乡居民基本养老保险
    medical_insured: bool = True
    # the reason for each chosen subsidy (living_subsidy, nursing_subsidy), in their words
    subsidy_reasons: dict[str, str] = field(default_factory=dict)
    in_school: bool = False  # 在校学生 (only some of 16-24)
    employee_pension: bool = False  # 职工基本养老保险 (单位交的), rarely
    certificate_trouble: str | None = None  # a holder's certificate: lost | damaged | reassess (补办/换领/重新评定)
    legal_guardian: bool = False  # the agent is the 法定监护人 (of a minor, or of an adult with 智力/精神残疾)
    agent_residence: str | None = None  # where the agent lives (asked where the region asks it)
    delivery: str = "pickup"  # pickup | mail (asked where the region asks)
    mail_address: str | None = None  # None = same as the household address
    tags: list[str] = field(default_factory=list)

    @property
    def certificate_no(self) -> str | None:
        if not self.holds_certificate or self.level is None:
            return None
        return f"{self.applicant.id_number}{self.category}{self.level}"

    @property
    def place(self) -> tuple[str, str]:
        """The 乡镇（街道） and 村（社区） of the household address."""
        return PLACES[self.address]

    @property
    def age(self) -> int:
        return age_on(self.applicant.birth)

    @property
    def county(self) -> str:
        return REGIONS[self.region][0]

    @property
    def home_county(self) -> str:
        """The 县 / 旗县（市、区） of the household address, as people name it (呼伦贝尔: 海拉尔区, 阿荣旗 ...)."""
        rest = self.address.split("呼伦贝尔市", 1)[-1] if self.region == "hulunbuir" else self.address
        for i, c in enumerate(rest):
            if c in "县区旗" or (c == "市" and i > 1):
                return rest[: i + 1]
        return self.county

    def describe(self) -> str:
        who = "本人" if self.agent is None else f"{self.agent_title}({self.relation})"
        level = LEVEL_WORDS.get(self.level or 0, "未评定")
        cert = "持证" if self.holds_certificate else "无证"
        if self.certificate_trouble:
            cert += f"({CERTIFICATE_TROUBLE[self.certificate_trouble]})"
        if self.agent is not None:
            who += " 法定监护人" if self.legal_guardian else " 代办"
        if self.in_school:
            cert += " 在校学生"
        if self.employee_pension:
            cert += " 职工养老保险"
        return (
            f"{self.key} {self.region} {who} {self.age}岁 {CATEGORIES[self.category]}{level} {cert} "
            f"{'+'.join(HARDSHIPS[h] for h in self.hardships)} {'户籍本地' if self.local_hukou else '户籍外地'} "
            f"{'/'.join(SERVICE_WORDS[s] for s in self.services)}"
        )


def _name(rng: random.Random, region: str, used: set[str]) -> str:
    while True:
        if region == "hulunbuir" and rng.random() < 0.35:
            name = rng.choice(MONGOLIAN)
        else:
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        if name not in used:
            used.add(name)
            return name


def generate(count: int = 40, seed: int = 20261123) -> list[Persona]:
    """`count` personas (at least 40), the same for the same seed, covering every relation, category,
    level (and not assessed), holder and non-holder, hardship, hukou in and out of the county, both
    regions, minors (always with a guardian), elderly applicants, and a guardian who wants all five."""
    assert count >= 40
    rng = random.Random(seed)
    used: set[str] = set()
    hardship_codes = list(HARDSHIP_CYCLE)
    who_cycle = [None, "parent", "child", "spouse", "sibling", "relative", "other", None]
    levels = [1, 2, 3, 4, None]
    personas: list[Persona] = []
    for n in range(count):
        region = "qingyang" if n % 2 == 0 else "hulunbuir"
        county_name, codes, homes, away = REGIONS[region]
        relation = who_cycle[n % len(who_cycle)]
        category = n % 7 + 1
        level = levels[(n // 2) % 5]
        holds = level is not None and (n % 3 != 2)
        if not holds:
            level = None  # without a certificate the level is not assessed yet
        local = n % 9 != 4
        # hardships: one each in turn, sometimes two
        first = hardship_codes[n % len(hardship_codes)]
        hardships = [first]
        if first not in ("none",) and n % 5 == 3:
            second = rng.choice(
                [h for h in hardship_codes if h not in ("none", first) and {h, first} != {"dibao_urban", "dibao_rural"}]
            )
            hardships.append(second)
        # the applicant's age
        if relation is None:
            age = rng.choice([rng.randint(18, 59), rng.randint(60, 82)])
        else:
            lo, hi = RELATIONS[relation][2]
            age = rng.randint(lo, hi)
            if relation == "parent" and n % 16 == 1:
                age = rng.randint(3, 13)  # a young child: the guardian consents
        birth = birth_for_age(rng, age)
        male = rng.random() < 0.55
        applicant = Person(_name(rng, region, used), make_id(rng, rng.choice(codes), birth, male), make_phone(rng))
        agent = None
        agent_title = applicant_title = ""
        if relation is not None:
            titles, callings, _ = RELATIONS[relation]
            agent_title = rng.choice(titles)
            applicant_title = rng.choice(callings)[0 if applicant.male else 1]
            if relation == "parent":
                agent_age = age + rng.randint(22, 35)
            elif relation == "child":
                agent_age = age - rng.randint(22, 35)
            elif relation in ("spouse", "sibling"):
                agent_age = max(20, age + rng.randint(-5, 5))
            elif relation == "relative":
                agent_age = rng.randint(22, 50)
            else:
                agent_age = rng.randint(28, 60)
            agent = Person(
                _name(rng, region, used),
                make_id(
                    rng,
                    rng.choice(codes),
                    birth_for_age(rng, agent_age),
                    agent_title in ("爸爸", "儿子", "哥哥", "弟弟", "孙子", "侄子"),
                ),
                make_phone(rng),
            )
            if rng.random() < 0.5 or age < 16:
                applicant.phone = agent.phone  # 同上
        # services: a guardian for all five now and then; otherwise what fits their situation, sometimes not
        if n % 10 in (1, 6):
            services = list(SERVICES)
        else:
            wanted = set()
            if not holds:
                wanted.add("disability_certificate")
            if first in ("dibao_urban", "dibao_rural", "tuopin") or rng.random() < 0.3:
                wanted.add("living_subsidy")
            if level in (1, 2) or (level is None and rng.random() < 0.5):
                wanted.add("nursing_subsidy")
            if first not in ("none", "tuopin") and rng.random() < 0.6:
                wanted.add("medical_assistance")
            if level in (1, 2) and rng.random() < 0.5:
                wanted.add("pension_subsidy")
            if not wanted:
                wanted.add(rng.choice(SERVICES[1:]))
            services = [s for s in SERVICES if s in wanted]
        tags = []
        if age < 18:
            tags.append("minor")
        if age >= 60:
            tags.append("elderly")
        delivery = "mail" if (region == "hulunbuir" and n % 4 == 1) else "pickup"
        personas.append(
            Persona(
                key=f"p{n:02d}",
                region=region,
                applicant=applicant,
                address=rng.choice(homes) if local else rng.choice(away),
                local_hukou=local,
                category=category,
                level=level,
                holds_certificate=holds,
                hardships=hardships,
                services=services,
                relation=relation,
                agent=agent,
                agent_title=agent_title,
                applicant_title=applicant_title,
                pension_enrolled=rng.random() < 0.8,
                medical_insured=rng.random() < 0.9,
                subsidy_reasons=_unused(
                    rng.choice(["家庭困难，长期需要人照顾", "生活不能自理，家里没有收入", "看病花销大，家庭困难"])
                ),
                delivery=delivery,
                mail_address=None if n % 8 != 5 else rng.choice(homes),
                tags=tags,
            )
        )
    for n, p in enumerate(personas):
        _new_policy_facts(p, n, random.Random(f"{seed}:{p.key}"))
    return personas


def _unused(_drawn: str) -> dict[str, str]:
    """The older single reason: still drawn, so that the facts drawn after it stay the same."""
    return {}


def _new_policy_facts(p: Persona, n: int, rng: random.Random) -> None:
    """The facts the 2026 policy questions need, from a random of their own (the older facts stay as they were)."""
    if p.key == "p33":
        # a 17-year-old at school, for the 在校学生 question of the pension (内蒙古 年满16周岁，不含在校学生)
        birth = birth_for_age(rng, 17)
        p.applicant.id_number = make_id(rng, p.applicant.id_number[:6], birth, p.applicant.male)
        p.services = [s for s in SERVICES if s in {*p.services, "pension_subsidy"}]
    # lost / damaged / to be reassessed: they want the certificate again (补办、换领、重新评定)
    trouble = {"p07": "lost", "p24": "damaged", "p37": "reassess"}.get(p.key)
    if trouble and p.holds_certificate:
        p.certificate_trouble = trouble
        p.services = [s for s in SERVICES if s in {*p.services, "disability_certificate"}]
    if p.key == "p20":
        p.hardships = ["returned_to_poverty"]  # 脱贫后又返贫
    age = p.age
    p.in_school = 16 <= age <= 24 and (p.key == "p33" or rng.random() < 0.5)
    p.employee_pension = p.agent is None and 25 <= age <= 59 and n % 4 == 3
    if p.agent is not None:
        minor = age < 18
        p.legal_guardian = (minor and p.relation == "parent") or (
            not minor and p.category in (5, 6) and p.relation in ("parent", "spouse", "child")
        )
        lives_together = p.relation in ("parent", "spouse") and p.local_hukou
        p.agent_residence = p.address if lives_together else rng.choice(REGIONS[p.region][2])
    reasons = {
        "living_subsidy": rng.choice(["家里没有收入，生活困难", "看病花销大，家庭困难", "家庭困难，收入很低"]),
        "nursing_subsidy": rng.choice(["生活不能自理，长期需要人照顾", "瘫痪在床，需要人护理", "离不开人，家里要有人照护"]),
    }
    p.subsidy_reasons = {s: reasons[s] for s in SUBSIDIES if s in p.services}


def coverage(personas: list[Persona]) -> dict[str, set]:
    """What the personas cover, for the test that checks the generator."""
    return {
        "relation": {p.relation for p in personas},
        "category": {p.category for p in personas},
        "level": {p.level for p in personas},
        "holds": {p.holds_certificate for p in personas},
        "hardship": {h for p in personas for h in p.hardships},
        "region": {p.region for p in personas},
        "hukou": {p.local_hukou for p in personas},
        "tags": {t for p in personas for t in p.tags},
        "in_school": {p.in_school for p in personas},
        "employee_pension": {p.employee_pension for p in personas},
        "certificate_trouble": {p.certificate_trouble for p in personas},
        "legal_guardian": {p.legal_guardian for p in personas if p.agent is not None},
    }
