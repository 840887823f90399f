"""Finding personal data where it must not be: in logs (the whole test run's), in Redis, in /metrics.

What counts: any ID number that is valid by GB 11643 (18 characters, birth date, checksum), any
disability certificate number (a valid ID number and two digits), any mobile number, and the names,
addresses and media ids the tests send (collected from tests/ itself, so a new transcript's data is
covered without a list to keep up to date).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml

from dialogs.validators import ValidationError, parse_id_number

TESTS = Path(__file__).resolve().parent

_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?:\d{2})?(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?!\d)")
_HAN = "\u4e00-\u9fff"
_ADDRESS = re.compile(rf"[{_HAN}]{{2,}}(?:村|街道|街|路)[{_HAN}\d]*号")
# Names the Python tests use (the transcripts' names are found in them, below).
TEST_NAMES = ["王小宝", "李秀英", "张三", "王芳", "王小明", "李小明", "陈强", "钱多多", "吴敏", "欧阳桂兰", "欧阳志远"]
TEST_MEDIA_IDS = ["media-photo-1", "voice-media", "MEDIA-EARLY-5521", "MEDIA-CARD-7781"]


def _valid_id(number: str) -> bool:
    try:
        parse_id_number(number.upper(), today=date.max)
    except ValidationError:
        return False
    return True


@lru_cache(maxsize=1)
def known_personal_words() -> tuple[str, ...]:
    """Names, addresses and media ids sent by the tests."""
    words = set(TEST_NAMES) | set(TEST_MEDIA_IDS)
    for path in [*TESTS.glob("*.py"), *TESTS.glob("transcripts/*.yaml")]:
        words.update(_ADDRESS.findall(path.read_text(encoding="utf-8")))
    for path in TESTS.glob("transcripts/*.yaml"):
        script = yaml.safe_load(path.read_text(encoding="utf-8"))
        words.update(str(v) for v in script.get("personal", []) if not str(v).isdigit())
        for step in script["steps"]:
            expect = step.get("expect") or []
            expect = expect if isinstance(expect, list) else [expect]
            said = str(step.get("say", ""))
            # The answer to "请发…姓名" is a name: the next question asks for the ID number.
            if re.fullmatch(rf"[{_HAN}]{{2,4}}", said) and any("身份证号" in str(e) for e in expect):
                words.add(said)
            for media in ("image", "voice_media"):
                if media in step:
                    words.add(str(step[media]))
    return tuple(sorted(words))


def personal_data_in(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Every piece of personal data found in the text, each as 'kind value'."""
    found = []
    for match in _ID.finditer(text):
        number = match.group()
        if _valid_id(number[:18]):
            found.append(("certificate number " if len(number) == 20 else "ID number ") + number)
    found += ["mobile " + m.group() for m in _MOBILE.finditer(text)]
    found += [f"name/address/media id {w}" for w in (*known_personal_words(), *extra) if w and w in text]
    return found


# -- the whole run's logs ------------------------------------------------------------------------
@dataclass
class Finding:
    where: str
    what: list[str]
    line: str


# The tests' own tools, not the bot: selenium's wire log repeats what the simulator page shows the
# citizen (their own name and address on their own screen), and urllib3 carries it.
TEST_TOOL_LOGGERS = {"selenium", "urllib3"}


class LogScan(logging.Handler):
    """A root handler for the whole test session: every record at DEBUG, formatted as in production,
    scanned as it is written; `findings` says which test logged what."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.test = "(collection)"
        self.lines = 0
        self.findings: list[Finding] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.partition(".")[0] in TEST_TOOL_LOGGERS:
            return
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is logging's own error path
            return
        self.lines += 1
        what = personal_data_in(line)
        if what:
            self.findings.append(Finding(self.test, what, line[:300]))

    def scan_file(self, path: Path) -> None:
        """A log written by a child process (bot serve), scanned at the end of the session."""
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            self.lines += 1
            what = personal_data_in(line)
            if what:
                self.findings.append(Finding(f"{path}:{n}", what, line[:300]))


def child_process_logs(basetemp: Path) -> list[Path]:
    """The logs of `bot serve` child processes the tests started (tests/processes.py writes them
    as bot-<port>.log under the test's tmp_path)."""
    return sorted(basetemp.rglob("bot-*.log")) if basetemp.exists() else []


# -- Redis ---------------------------------------------------------------------------------------
async def _values(client, key: bytes) -> list[tuple[bytes | None, bytes]]:
    """(hash field or None, value) for every value of a key: hash fields, list items, set and zset
    members, stream entries."""
    kind = await client.type(key)
    if kind == b"string":
        return [(None, await client.get(key) or b"")]
    if kind == b"hash":
        return list((await client.hgetall(key)).items())
    if kind == b"list":
        values = await client.lrange(key, 0, -1)
    elif kind == b"set":
        values = list(await client.smembers(key))
    elif kind == b"zset":
        values = await client.zrange(key, 0, -1)
    elif kind == b"stream":
        values = [repr(e).encode() for e in await client.xrange(key)]
    else:
        values = []
    return [(None, v) for v in values]


async def redis_contents(client) -> list[tuple[bytes, bytes]]:
    """Every key with all its values (and hash fields) in one text."""
    out = []
    async for key in client.scan_iter(count=500):
        pairs = await _values(client, key)
        out.append((key, b"\n".join(v if f is None else f + b"=" + v for f, v in pairs)))
    return out


async def personal_data_in_redis(client, secrets: list[str]) -> list[str]:
    """Each secret (and any valid ID number or mobile) found in clear in a key or value."""
    found = []
    for key, value in await redis_contents(client):
        text = key.decode(errors="replace") + "\n" + value.decode(errors="replace")
        found += [f"{key.decode(errors='replace')}: {s}" for s in secrets if s in text]
        found += [f"{key.decode(errors='replace')}: {w}" for w in personal_data_in(text) if not w.startswith("name/")]
    return found


# -- one application with every kind of personal data ---------------------------------------------
# A mother applies for her adult son's two subsidies: both names, both ID numbers, both phones (his
# by voice), the address, his certificate number, and two photos (media ids).
MOTHER_FOR_SON = [
    ("say", "你好"),
    ("say", "2"),
    ("say", "妈妈"),
    ("say", "欧阳桂兰"),
    ("say", "341723196807040038"),
    ("say", "13955501234"),
    ("say", "生活补贴和护理补贴"),
    ("say", "青阳县酉华镇酉华村9号"),  # the 户口本 address, in the screen: it says the 户口 is in 青阳县
    ("say", "1"),
    # the 证号 first: it holds the son's ID number (341723199503100058), 肢体 (4) and 一级 (1)
    ("say", "34172319950310005841"),
    ("say", "2"),
    ("image", "MEDIA-EARLY-5521"),
    ("say", "欧阳志远"),
    ("voice", "15955506789"),
    ("image", "MEDIA-CARD-7781"),
    ("say", "1"),
    ("say", "0"),
    ("say", "1"),  # the summary, and the declaration printed with it
    ("say", "1"),  # the consent
]
MOTHER_FOR_SON_PERSONAL = [
    "欧阳桂兰",
    "欧阳志远",
    "341723196807040038",
    "341723199503100058",
    "34172319950310005841",
    "13955501234",
    "15955506789",
    "青阳县酉华镇酉华村9号",
    "MEDIA-EARLY-5521",
    "MEDIA-CARD-7781",
    "voice-media",
]


async def opened_contents(client, sealer) -> list[tuple[str, str]]:
    """(key, plaintext) of every value that opens with our keys (a sealed value is bound to its key
    name, a hash field's to "key:field"): what the bot could still read about anyone."""
    from integrations.sealing import SealError

    out = []
    async for key in client.scan_iter(count=500):
        name = key.decode(errors="replace")
        for field, value in await _values(client, key):
            contexts = [name] if field is None else [f"{name}:{field.decode(errors='replace')}", name]
            for context in contexts:
                try:
                    out.append((name, sealer.open(value, context).decode(errors="replace")))
                    break
                except (SealError, IndexError):
                    pass
    return out


async def linkage_in_redis(client, openid: str, about: list[str]) -> list[str]:
    """Every key whose name or clear values name the openid together with any of `about` (an application
    id, a service, a reminder): who applied for what, readable without the data key. Key names count
    (hash fields and sorted-set members too); sealed values do not contain the text they hide."""
    found = []
    for key, value in await redis_contents(client):
        name = key.decode(errors="replace")
        text = name + "\n" + value.decode(errors="replace")
        if openid in text:
            found += [f"{name}: {openid} with {word}" for word in about if word in text]
    return found
