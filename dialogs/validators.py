"""Validation of citizens' form answers: typed, spoken (voice recognition) or pasted.

Pure functions. Each parse_* returns a normalized value or raises
ValidationError(code); the hint shown for each code lives in
content/common/validation.yaml, so no citizen-facing wording is kept here.

Separators: normalize() drops '-' and other separators inside numbers, landlines
included. The hyphen carries no information we need: mainland area codes are
prefix-free (010 and 02x have 3 digits, every other one 4), so parse_phone
finds the area code itself and writes the landline back as '0566-5123456'.
Local numbers never start with 0 or 1, so such a number is rejected as a typo.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

from stdnum.cn import ric
from stdnum.exceptions import ValidationError as _StdnumError

CODES = (
    "id_length",
    "id_old_15",
    "id_chars",
    "id_checksum",
    "id_birth_date",
    "phone_format",
    "phone_area_code",
    "cert_length",
    "cert_id_invalid",
    "cert_id_mismatch",
    "cert_category",
    "cert_level",
    "cert_category_mismatch",
    "cert_level_mismatch",
    "name_format",
    "address_format",
)

CERT_CATEGORIES = range(1, 8)  # 1 视力 2 听力 3 言语 4 肢体 5 智力 6 精神 7 多重
CERT_LEVELS = range(1, 5)


class ValidationError(ValueError):
    def __init__(self, code: str) -> None:
        assert code in CODES, code
        super().__init__(code)
        self.code = code


# --- normalization -----------------------------------------------------------

_SPOKEN = str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")
# Voice recognition writes the ID's last character as "叉".
_X = str.maketrans({"叉": "X", "x": "X"})
# Zero-width and other format characters that pasting drags along.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
# Separators people and voice recognition put inside numbers (after NFKC).
_NUM_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−_.,。、·・/()]")
_NUMBERISH = re.compile(r"\+?[0-9零〇一二三四五六七八九幺两xX叉\s\-‐‑‒–—―−_.,。、·・/()]*")
# Words around a number ("我的电话是…", "…，谢谢"): Han characters and punctuation
# other than spoken digits and 叉. Only the ends are trimmed, so a stray word
# inside a number still fails instead of being dropped silently.
_WORD = r"(?:(?![零〇一二三四五六七八九幺两叉])[\u4e00-\u9fff]|[:：,，、;；。.!！?？~～])"
_NUMBER_WORDS = re.compile(rf"^{_WORD}+|{_WORD}+$")


def spoken_digits(text: str) -> str:
    """Map spoken Chinese digits (as voice recognition writes them) to 0-9: "幺三八" -> "138"."""
    return text.translate(_SPOKEN)


def _drop_spaces(text: str) -> str:
    # Spaces only matter between Latin letters ("John Smith"); elsewhere they are noise.
    def latin(c: str) -> bool:
        return c.isalpha() and c < "\u0250"

    def keep(m: re.Match[str]) -> str:
        before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
        return " " if latin(before) and latin(after) else ""

    return _SPACE.sub(keep, text)


def normalize(text: str) -> str:
    """NFKC (full-width -> ASCII), strip, drop spaces except between Latin words.

    When the whole answer is a number (digits, spoken digits, separators, X),
    also drop separators, map spoken digits and "叉"/"x" to "X".
    """
    text = unicodedata.normalize("NFKC", text or "")
    text = _INVISIBLE.sub("", text).strip()
    if text and _NUMBERISH.fullmatch(text):
        text = _NUM_SEPARATORS.sub("", spoken_digits(text)).translate(_X)
    return _drop_spaces(text)


def _number_answer(text: str) -> str:
    text = normalize(text)
    if len(text) > 64:  # no number answer is this long; skip the trimming regex
        return text
    return normalize(_NUMBER_WORDS.sub("", text))


# --- ID card (居民身份证, GB 11643-1999) --------------------------------------


@dataclass(frozen=True)
class IdNumber:
    number: str
    birth_date: date
    gender: Literal["male", "female"]
    region_code: str

    def age_on(self, day: date) -> int:
        born = self.birth_date
        # A 29 February birthday counts from 1 March in non-leap years.
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _check_id(number: str, today: date) -> IdNumber:
    if not re.fullmatch(r"[0-9X]*", number):
        raise ValidationError("id_chars")
    if len(number) == 15:
        raise ValidationError("id_old_15")
    if len(number) != 18:
        raise ValidationError("id_length")
    if "X" in number[:17]:
        raise ValidationError("id_chars")
    # Birth date before checksum: a month 13 tells the citizen where to look.
    try:
        born = ric.get_birth_date(number)
    except _StdnumError:
        raise ValidationError("id_birth_date") from None
    if born.year < 1900 or born > today:
        raise ValidationError("id_birth_date")
    if ric.calc_check_digit(number) != number[17]:
        raise ValidationError("id_checksum")
    # The region code is not checked against GB/T 2260: codes get renamed and
    # old ID numbers keep the code of their time.
    return IdNumber(
        number=number,
        birth_date=born,
        gender="male" if int(number[16]) % 2 else "female",
        region_code=number[:6],
    )


def parse_id_number(text: str, *, today: date) -> IdNumber:
    return _check_id(_number_answer(text), today)


def mask_id(number: str) -> str:
    """'341722199001011234' -> '3417**********1234'."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


# --- phone ---------------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9]\d{9}")
# Area codes are prefix-free: 010 and 02x have three digits, all others four.
_LANDLINE = re.compile(r"(0(?:10|2\d))([2-9]\d{7})|(0[3-9]\d{2})([2-9]\d{6,7})")
_LOCAL_ONLY = re.compile(r"[2-9]\d{6,7}")


def parse_phone(text: str) -> str:
    """Mobile -> '13812345678'; landline -> '0566-1234567'."""
    number = _number_answer(text)
    international = False
    for prefix in ("+86", "0086"):
        if number.startswith(prefix):
            number, international = number[len(prefix) :], True
            break
    else:
        if len(number) == 13 and number.startswith("86") and _MOBILE.fullmatch(number[2:]):
            number = number[2:]
    if _MOBILE.fullmatch(number):
        return number
    if international and not number.startswith("0"):
        number = "0" + number  # +86 566 1234567: the trunk 0 is dropped abroad
    m = _LANDLINE.fullmatch(number)
    if m:
        area, local = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return f"{area}-{local}"
    if _LOCAL_ONLY.fullmatch(number):
        raise ValidationError("phone_area_code")
    raise ValidationError("phone_format")


def mask_phone(number: str) -> str:
    """'13812345678' -> '138****5678'; '0566-1234567' -> '0566-***4567'."""
    if "-" in number:
        area, local = number.split("-", 1)
        return f"{area}-{'*' * max(len(local) - 4, 0)}{local[-4:]}"
    if len(number) == 11:
        return number[:3] + "****" + number[-4:]
    return "*" * max(len(number) - 4, 0) + number[-4:]


# --- disability certificate (残疾人证, second generation) -----------------------


@dataclass(frozen=True)
class CertificateNo:
    number: str
    id_number: str
    category: int
    level: int


def parse_certificate_no(
    text: str,
    *,
    today: date,
    id_number: str | None = None,
    category: int | None = None,
    level: int | None = None,
) -> CertificateNo:
    """20 characters: the holder's 18-character ID number + category digit + level digit."""
    number = _number_answer(text)
    if len(number) != 20:
        raise ValidationError("cert_length")
    try:
        holder = _check_id(number[:18], today)
    except ValidationError:
        raise ValidationError("cert_id_invalid") from None
    cat, lvl = number[18], number[19]
    if not (cat.isdigit() and int(cat) in CERT_CATEGORIES):
        raise ValidationError("cert_category")
    if not (lvl.isdigit() and int(lvl) in CERT_LEVELS):
        raise ValidationError("cert_level")
    if id_number is not None and normalize(id_number) != holder.number:
        raise ValidationError("cert_id_mismatch")
    if category is not None and int(category) != int(cat):
        raise ValidationError("cert_category_mismatch")
    if level is not None and int(level) != int(lvl):
        raise ValidationError("cert_level_mismatch")
    return CertificateNo(number=number, id_number=holder.number, category=int(cat), level=int(lvl))


# --- name and address ---------------------------------------------------------

# CJK unified ideographs incl. extensions A-H: rare characters do occur in names.
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002ebef\U00030000-\U000323af"
_HAN_NAME = re.compile(rf"[{_HAN}]+(?:·[{_HAN}]+)*")
_LATIN_NAME = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]+(?:[ '\-][A-Za-zÀ-ÖØ-öø-ÿ]+)*")
# Minority names are written with many look-alike dots; the ID card uses '·'.
_NAME_DOT = re.compile(rf"(?<=[{_HAN}])[·•・‧∙⋅.。](?=[{_HAN}])")
_NAME_NOISE = re.compile(
    r"^(?:(?:你好|您好)[,，!！]?)?"
    r"(?:我(?:的)?(?:名字|姓名)(?:叫|是|为)?|我叫|我是|(?:名字|姓名)(?:叫|是|为)?|申请人(?:是|叫)?)"
    r"[:：]?"
)
_TRAILING_PUNCT = "。.!！~～,，;；"


def parse_name(text: str) -> str:
    name = normalize(text)
    name = _NAME_NOISE.sub("", name, count=1).rstrip(_TRAILING_PUNCT)
    name = _NAME_DOT.sub("·", name)
    if _HAN_NAME.fullmatch(name) and 2 <= len(name) <= 20:
        return name
    if _LATIN_NAME.fullmatch(name) and 2 <= len(name) <= 50:
        return name
    raise ValidationError("name_format")


_ADDRESS_NOISE = re.compile(r"^(?:我(?:家)?住在|我(?:家)?住|家住|(?:家庭|居住|现)?(?:住址|地址)(?:是|为|在)?)[:：]?")
_HAN_CHAR = re.compile(rf"[{_HAN}]")


def parse_address(text: str) -> str:
    address = normalize(text)
    # Voice recognition ends sentences with a full stop; an address never does.
    address = _ADDRESS_NOISE.sub("", address, count=1).strip().rstrip("。.，,！!？?；; ")
    if 5 <= len(address) <= 100 and _HAN_CHAR.search(address) and address.isprintable():
        return address
    raise ValidationError("address_format")
