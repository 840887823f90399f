"""Bad input, systematically: the form validators (dialogs/validators.py) and the option reader, with hypothesis.

Every parser either returns a normalised value or raises ValidationError with a documented code;
nothing else escapes. Valid inputs are accepted in every way a citizen may type or speak them, and
the result agrees with an independent GB 11643 check (tests/test_validators.check_digit).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dialogs.pack import load_pack
from dialogs.understanding import NO_MATCH, Understanding
from dialogs.validators import (
    CERT_CATEGORIES,
    CERT_LEVELS,
    CODES,
    ValidationError,
    normalize,
    parse_address,
    parse_certificate_no,
    parse_id_number,
    parse_name,
    parse_phone,
)
from tests.fuzz_support import characters, count, fuzz, nasty_text
from tests.test_validators import check_digit

TODAY = date(2025, 6, 1)
anything = st.one_of(
    nasty_text, st.text(characters, max_size=80), st.text(st.sampled_from("0123456789Xx叉-. 幺两零"), max_size=25)
)

# -- how citizens write a number -----------------------------------------------------------------

SPOKEN = {
    "0": "0０零〇",
    "1": "1１一幺",
    "2": "2２二两",
    "3": "3３三",
    "4": "4４四",
    "5": "5５五",
    "6": "6６六",
    "7": "7７七",
    "8": "8８八",
    "9": "9９九",
    "X": "XxＸｘ叉",
}
SEPARATORS = ["", "", "", " ", "-", "－", "—", ".", "·", "/", "\u200b", "\u3000", "、", ","]
PREFIXES = ["", "", "我的身份证号是", "号码：", "是 ", "\ufeff"]
SUFFIXES = ["", "", "。", "，谢谢", " ", "!"]


@st.composite
def written(draw, number: str, words: bool = True) -> str:
    """`number` as typed or spoken: digit by digit ASCII, full-width or Chinese, with separators."""
    sep = draw(st.sampled_from(SEPARATORS))
    body = sep.join(draw(st.sampled_from(SPOKEN[c])) for c in number)
    if not words:
        return body
    return draw(st.sampled_from(PREFIXES)) + body + draw(st.sampled_from(SUFFIXES))


@st.composite
def id_numbers(draw, born=st.dates(date(1900, 1, 1), TODAY)) -> str:
    body = (
        draw(st.from_regex(r"[1-9][0-9]{5}", fullmatch=True))
        + draw(born).strftime("%Y%m%d")
        + draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    )
    return body + check_digit(body)


def oracle_accepts(number: str) -> bool:
    """GB 11643 written out: 18 characters, a real birth date from 1900 to TODAY, the check digit."""
    if not re.fullmatch(r"[0-9]{17}[0-9X]", number):
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return born.year >= 1900 and born <= TODAY and check_digit(number[:17]) == number[17]


def code_of(parse, *args, **kwargs) -> str | None:
    """None when accepted, else the ValidationError's code; any other exception fails the test."""
    try:
        parse(*args, **kwargs)
    except ValidationError as e:
        assert e.code in CODES
        return e.code
    return None


# -- ID numbers ------------------------------------------------------------------------------------


@fuzz()
@given(number=id_numbers(), data=st.data())
def test_a_valid_id_number_is_accepted_however_it_is_written(number, data):
    count()
    text = data.draw(written(number))
    parsed = parse_id_number(text, today=TODAY)
    assert parsed.number == number, text
    assert parsed.birth_date.strftime("%Y%m%d") == number[6:14]
    assert parsed.gender == ("male" if int(number[16]) % 2 else "female")
    assert parsed.age_on(parsed.birth_date) == 0 and parsed.age_on(TODAY) >= 0


@fuzz()
@given(number=id_numbers(), at=st.integers(0, 17), new=st.sampled_from("0123456789X"))
def test_one_changed_character_in_a_valid_id_number_is_rejected(number, at, new):
    count()
    assume(number[at] != new)
    changed = number[:at] + new + number[at + 1 :]
    assert code_of(parse_id_number, changed, today=TODAY) in ("id_checksum", "id_birth_date", "id_chars")


@fuzz()
@given(number=id_numbers(), at=st.integers(0, 16))
def test_two_swapped_neighbours_in_a_valid_id_number_are_rejected(number, at):
    count()
    assume(number[at] != number[at + 1])
    swapped = number[:at] + number[at + 1] + number[at] + number[at + 2 :]
    assert code_of(parse_id_number, swapped, today=TODAY) is not None


@fuzz(3)
@given(
    text=st.one_of(
        anything,
        id_numbers()
        .flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 17), st.sampled_from("0123456789X")))
        .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
    )
)
def test_any_text_as_an_id_number_agrees_with_gb11643(text):
    count()
    code = code_of(parse_id_number, text, today=TODAY)
    plain = normalize(text)
    if re.fullmatch(r"[0-9X]{18}", plain):
        assert (code is None) == oracle_accepts(plain), (text, code)
    if code is None:
        assert oracle_accepts(parse_id_number(text, today=TODAY).number)


# -- phones ----------------------------------------------------------------------------------------

mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
landlines = st.one_of(
    st.tuples(st.from_regex(r"0(10|2[0-9])", fullmatch=True), st.from_regex(r"[2-9][0-9]{7}", fullmatch=True)),
    st.tuples(st.from_regex(r"0[3-9][0-9][0-9]", fullmatch=True), st.from_regex(r"[2-9][0-9]{6,7}", fullmatch=True)),
)


@fuzz()
@given(number=mobiles, prefix=st.sampled_from(["", "+86", "+86 ", "0086", "86", "我的手机号是"]), data=st.data())
def test_a_mobile_number_is_accepted_however_it_is_written(number, prefix, data):
    count()
    text = prefix + data.draw(written(number, words=False)) + data.draw(st.sampled_from(SUFFIXES))
    assert parse_phone(text) == number, text


@fuzz()
@given(
    landline=landlines, style=st.sampled_from(["{a}-{l}", "{a}{l}", "({a}) {l}", "+86 {a0} {l}", "0086{a0}{l}"]), data=st.data()
)
def test_a_landline_is_accepted_with_its_area_code_however_it_is_written(landline, style, data):
    count()
    area, local = landline
    text = style.format(a=data.draw(written(area, words=False)), a0=area[1:], l=data.draw(written(local, words=False)))
    assert parse_phone(text) == f"{area}-{local}", text
    assert code_of(parse_phone, local) in ("phone_area_code", "phone_format")


@fuzz(2)
@given(text=anything)
def test_any_text_as_a_phone_is_a_phone_or_a_documented_error(text):
    count()
    code = code_of(parse_phone, text)
    if code is None:
        phone = parse_phone(text)
        assert re.fullmatch(r"1[3-9][0-9]{9}|0(10|2[0-9])-[2-9][0-9]{7}|0[3-9][0-9][0-9]-[2-9][0-9]{6,7}", phone), phone
        assert parse_phone(phone) == phone
    else:
        assert code.startswith("phone_")


# -- certificate numbers, categories and levels ----------------------------------------------------


@fuzz()
@given(number=id_numbers(), category=st.sampled_from(CERT_CATEGORIES), level=st.sampled_from(CERT_LEVELS), data=st.data())
def test_a_valid_certificate_number_is_accepted_and_its_parts_checked(number, category, level, data):
    count()
    cert = f"{number}{category}{level}"
    parsed = parse_certificate_no(data.draw(written(cert)), today=TODAY, id_number=number, category=category, level=level)
    assert (parsed.number, parsed.id_number, parsed.category, parsed.level) == (cert, number, category, level)
    other = data.draw(st.integers(0, 9))
    assume(other != category)
    expected = "cert_category_mismatch" if other in CERT_CATEGORIES else "cert_category"
    assert code_of(parse_certificate_no, f"{number}{other}{level}", category=category, today=TODAY) == expected
    at, digit = data.draw(st.integers(0, 17)), data.draw(st.sampled_from("0123456789"))
    assume(number[at] != digit)
    assert (
        code_of(parse_certificate_no, f"{number[:at]}{digit}{number[at + 1 :]}{category}{level}", today=TODAY)
        == "cert_id_invalid"
    )


@fuzz()
@given(text=anything, category=st.sampled_from([None, *CERT_CATEGORIES]), level=st.sampled_from([None, *CERT_LEVELS]))
def test_any_text_as_a_certificate_number_is_one_or_a_documented_error(text, category, level):
    count()
    code = code_of(parse_certificate_no, text, today=TODAY, category=category, level=level)
    assert code is None or code.startswith("cert_")
    if code is None:
        cert = parse_certificate_no(text, today=TODAY)
        assert oracle_accepts(cert.id_number) and cert.number == f"{cert.id_number}{cert.category}{cert.level}"


# -- names and addresses ---------------------------------------------------------------------------

han = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐欧阳买"


@fuzz()
@given(
    surname=st.sampled_from(SURNAMES),
    given_name=st.text(han, min_size=1, max_size=3),
    second=st.text(han, max_size=4),
    dot=st.sampled_from("·•・‧∙⋅."),
    noise=st.sampled_from(["", "我叫", "我的名字是", "姓名：", "申请人是", "你好，我叫"]),
    end=st.sampled_from(["", "。", "!", " "]),
)
def test_a_chinese_name_is_accepted_with_the_words_around_it(surname, given_name, second, dot, noise, end):
    count()
    name = surname + given_name + (f"·{second}" if second else "")
    text = noise + name.replace("·", dot) + end
    assert parse_name(text) == name, text


@fuzz(2)
@given(text=anything)
def test_any_text_as_a_name_or_an_address_is_one_or_a_documented_error(text):
    count()
    if code_of(parse_name, text) is None:
        name = parse_name(text)
        assert 2 <= len(name) <= 50 and name.isprintable() and parse_name(name) == name
    else:
        assert code_of(parse_name, text) == "name_format"
    if code_of(parse_address, text) is None:
        address = parse_address(text)
        assert 5 <= len(address) <= 100 and address.isprintable()
        assert any(unicodedata.name(c, "").startswith("CJK UNIFIED IDEOGRAPH") for c in address), address
    else:
        assert code_of(parse_address, text) == "address_format"


@fuzz()
@given(
    address=st.tuples(
        st.sampled_from("青甘安呼内"),
        st.text(st.one_of(han, st.sampled_from("0123456789号楼-")), min_size=4, max_size=60),
        st.sampled_from("村号室组"),
    ).map("".join),
    noise=st.sampled_from(["", "我家住在", "地址：", "住址是", "现住址"]),
    end=st.sampled_from(["", "。", "，", " "]),
)
def test_an_address_is_kept_as_written(address, noise, end):
    count()
    assert parse_address(noise + address + end) == normalize(address)


# -- options: levels, categories and every other choice ---------------------------------------------


@pytest.fixture(scope="module")
def understanding():
    pack = load_pack("qingyang")
    questions = {name: q["options"] for name, q in pack.questions.items() if q.get("options")}
    return Understanding(pack), questions


HAN_NUMBERS = "零一二三四五六七八九十"


@fuzz()
@given(data=st.data(), style=st.sampled_from(["{n}", "{w}", "第{n}项", " {n}。", "{h}", "选{n}", "{n}号"]))
def test_an_option_number_chooses_that_option_however_it_is_written(understanding, data, style):
    count()
    lang, questions = understanding
    name = data.draw(st.sampled_from(sorted(questions)))
    options = questions[name]
    n = data.draw(st.integers(1, min(len(options), 10)))
    text = style.format(n=n, w=str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９")), h=HAN_NUMBERS[n])
    assert lang.choose(text, options) == options[n - 1]["value"], (name, text)
    assert lang.choose(options[n - 1]["label"], options) == options[n - 1]["value"], (name, options[n - 1]["label"])


@fuzz()
@given(text=anything, data=st.data())
def test_any_text_is_read_without_an_error(understanding, text, data):
    count()
    lang, questions = understanding
    options = questions[data.draw(st.sampled_from(sorted(questions)))]
    value = lang.choose(text, options)
    assert value is NO_MATCH or value in [o["value"] for o in options]
    lang.command(text), lang.topic(text), lang.edit_target(text), lang.services_in(text), lang.numbers(text), lang.is_yes(text)


def test_dates_around_today_and_1900():
    """The edges of the birth date, exactly (hypothesis draws between them)."""
    for born, ok in ((date(1900, 1, 1), True), (date(1899, 12, 31), False), (TODAY, True), (TODAY + timedelta(days=1), False)):
        body = "341722" + born.strftime("%Y%m%d") + "123"
        assert (code_of(parse_id_number, body + check_digit(body), today=TODAY) is None) == ok, born
