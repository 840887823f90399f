import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from dialogs import validators as v
from dialogs.validators import (
    CODES,
    ValidationError,
    mask_id,
    mask_phone,
    normalize,
    parse_address,
    parse_certificate_no,
    parse_id_number,
    parse_name,
    parse_phone,
    spoken_digits,
)

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2025, 6, 1)


# GB 11643-1999 check digit, written out independently of stdnum.
def check_digit(body17: str) -> str:
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(body17))
    return "10X98765432"[total % 11]


def make_id(region: str = "341722", birth: str = "19900101", seq: str = "123") -> str:
    body = region + birth + seq
    assert len(body) == 17
    return body + check_digit(body)


def make_x_id(region: str = "110105", birth: str = "19850315") -> str:
    for n in range(1000):
        number = make_id(region, birth, f"{n:03d}")
        if number.endswith("X"):
            return number
    raise AssertionError("no X check digit found")


def wrong_check(number: str) -> str:
    last = number[-1]
    return number[:-1] + ("0" if last == "X" else str((int(last) + 1) % 10))


FULLWIDTH = str.maketrans("0123456789Xx-+", "０１２３４５６７８９Ｘｘ－＋")
SPOKEN = str.maketrans("0123456789", "零幺两三四五六七八九")

ID = make_id()  # male (seq 123 is odd)
ID_F = make_id(seq="124")
ID_X = make_x_id()
OTHER_ID = make_id("622801", "19700520", "045")


def test_check_digit_helper_matches_published_examples():
    # The standard's own example numbers.
    assert make_id("110105", "19491231", "002") == "11010519491231002X"
    assert make_id("440524", "18800101", "001") == "440524188001010014"
    assert ID_X.endswith("X")


# --- ID numbers ----------------------------------------------------------------

VALID_IDS = [
    (ID, ID),
    (ID_X, ID_X),
    (ID_X[:-1] + "x", ID_X),
    (ID_X[:-1] + "叉", ID_X),
    (ID.translate(FULLWIDTH), ID),
    (ID_X.lower().translate(FULLWIDTH), ID_X),
    (f"{ID[:6]} {ID[6:14]} {ID[14:]}", ID),
    (f"{ID[:6]}-{ID[6:14]}-{ID[14:]}", ID),
    (ID.translate(SPOKEN), ID),
    (ID_X[:-1].translate(SPOKEN) + "叉", ID_X),
    (f"我的身份证号是{ID}。", ID),
    (f"身份证号：{ID}", ID),
    (f"  {ID}\u200b ", ID),
]


@pytest.mark.parametrize("text,expected", VALID_IDS)
def test_parse_id_number_valid(text, expected):
    assert parse_id_number(text, today=TODAY).number == expected


def test_parse_id_number_fields():
    parsed = parse_id_number(ID, today=TODAY)
    assert parsed.birth_date == date(1990, 1, 1)
    assert parsed.gender == "male"
    assert parsed.region_code == "341722"
    assert parse_id_number(ID_F, today=TODAY).gender == "female"
    assert parse_id_number(ID_X, today=TODAY).birth_date == date(1985, 3, 15)


ID_ERRORS = [
    (wrong_check(ID), "id_checksum"),
    (wrong_check(ID_X), "id_checksum"),
    (ID[:-1] + "X", "id_checksum"),
    (ID[:17], "id_length"),
    (ID + "1", "id_length"),
    ("", "id_length"),
    ("341722900101123", "id_old_15"),
    (ID[:5] + "X" + ID[6:], "id_chars"),
    (ID[:-1] + "A", "id_chars"),
    (ID[:10] + "十" + ID[11:], "id_chars"),
    (make_id(birth="19901301"), "id_birth_date"),
    (make_id(birth="19900230"), "id_birth_date"),
    (make_id(birth="18991231"), "id_birth_date"),
    (make_id(birth="20250602"), "id_birth_date"),  # after TODAY
]


@pytest.mark.parametrize("text,code", ID_ERRORS)
def test_parse_id_number_errors(text, code):
    with pytest.raises(ValidationError) as err:
        parse_id_number(text, today=TODAY)
    assert err.value.code == code


@pytest.mark.parametrize(
    "birth,day,age",
    [
        ("19900101", date(2025, 1, 1), 35),
        ("19900101", date(2024, 12, 31), 34),
        ("19900615", date(2025, 6, 14), 34),
        ("19900615", date(2025, 6, 15), 35),
        ("20000229", date(2025, 2, 28), 24),
        ("20000229", date(2025, 3, 1), 25),
        ("20000229", date(2024, 2, 29), 24),
    ],
)
def test_age_on(birth, day, age):
    assert parse_id_number(make_id(birth=birth), today=TODAY).age_on(day) == age


@pytest.mark.parametrize(
    "number,masked",
    [
        ("341722199001011234", "3417**********1234"),
        ("11010519491231002X", "1101**********002X"),
        ("1234", "****"),
    ],
)
def test_mask_id(number, masked):
    assert mask_id(number) == masked


# --- normalize / spoken digits -------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("幺三八一二三四五六七八", "13812345678"),
        ("零〇两", "002"),
        ("幺两三", "123"),
    ],
)
def test_spoken_digits(text, expected):
    assert spoken_digits(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("１３８ １２３４ ５６７８", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("138.1234.5678", "13812345678"),
        ("幺三八，幺两三四，五六七八。", "13812345678"),
        ("3417x", "3417X"),
        ("3417叉", "3417X"),
        ("  张 三 ", "张三"),
        ("John   Smith", "John Smith"),
        ("ＡＢＣ", "ABC"),
        ("三号楼 二单元", "三号楼二单元"),  # not a number: Han digits stay
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


# --- phone -----------------------------------------------------------------------

VALID_PHONES = [
    ("13812345678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("１３８－１２３４－５６７８", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("+8613812345678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("0086-13812345678", "13812345678"),
    ("幺三八一二三四五六七八", "13812345678"),
    ("幺九九，两三四五，六七八九", "19923456789"),
    ("我的手机号是13812345678", "13812345678"),
    ("13812345678，谢谢", "13812345678"),
    ("0566-5123456", "0566-5123456"),
    ("05665123456", "0566-5123456"),
    ("(0566) 512 3456", "0566-5123456"),
    ("0470-83456789", "0470-83456789"),
    ("010-62345678", "010-62345678"),
    ("01062345678", "010-62345678"),
    ("021 6234 5678", "021-62345678"),
    ("+86 10 6234 5678", "010-62345678"),
    ("零五六六五幺两三四五六", "0566-5123456"),
]


@pytest.mark.parametrize("text,expected", VALID_PHONES)
def test_parse_phone_valid(text, expected):
    assert parse_phone(text) == expected


PHONE_ERRORS = [
    ("5123456", "phone_area_code"),
    ("62345678", "phone_area_code"),
    ("1381234567", "phone_format"),
    ("138123456789", "phone_format"),
    ("幺三八一二三四五六七八九", "phone_format"),  # twelve digits
    ("12812345678", "phone_format"),
    ("021-6234567", "phone_format"),  # 02x local numbers have 8 digits
    ("0566-0123456", "phone_format"),
    ("不知道", "phone_format"),
    ("", "phone_format"),
]


@pytest.mark.parametrize("text,code", PHONE_ERRORS)
def test_parse_phone_errors(text, code):
    with pytest.raises(ValidationError) as err:
        parse_phone(text)
    assert err.value.code == code


@pytest.mark.parametrize(
    "number,masked",
    [
        ("13812345678", "138****5678"),
        ("0566-5123456", "0566-***3456"),
        ("010-62345678", "010-****5678"),
    ],
)
def test_mask_phone(number, masked):
    assert mask_phone(number) == masked


# --- disability certificate number -----------------------------------------------

CERT = ID + "42"
CERT_X = ID_X + "71"


@pytest.mark.parametrize(
    "text,kwargs,expected",
    [
        (CERT, {}, (CERT, ID, 4, 2)),
        (CERT, {"id_number": ID, "category": 4, "level": 2}, (CERT, ID, 4, 2)),
        (CERT.translate(FULLWIDTH), {"id_number": ID}, (CERT, ID, 4, 2)),
        (f"{ID} 4 2", {}, (CERT, ID, 4, 2)),
        (ID_X[:-1] + "x71", {"id_number": ID_X.lower()}, (CERT_X, ID_X, 7, 1)),
        (ID_X[:-1] + "叉71", {"category": 7, "level": 1}, (CERT_X, ID_X, 7, 1)),
        (CERT.translate(SPOKEN), {}, (CERT, ID, 4, 2)),
    ],
)
def test_parse_certificate_no_valid(text, kwargs, expected):
    cert = parse_certificate_no(text, today=TODAY, **kwargs)
    assert (cert.number, cert.id_number, cert.category, cert.level) == expected


CERT_ERRORS = [
    (CERT[:-1], {}, "cert_length"),
    (CERT + "01", {}, "cert_length"),  # old 22-character numbers are not accepted
    (ID, {}, "cert_length"),
    (wrong_check(ID) + "42", {}, "cert_id_invalid"),
    (make_id(birth="19901301") + "42", {}, "cert_id_invalid"),
    (ID + "02", {}, "cert_category"),
    (ID + "82", {}, "cert_category"),
    (ID + "X2", {}, "cert_category"),
    (ID + "40", {}, "cert_level"),
    (ID + "45", {}, "cert_level"),
    (CERT, {"id_number": OTHER_ID}, "cert_id_mismatch"),
    (CERT, {"category": 1}, "cert_category_mismatch"),
    (CERT, {"id_number": ID, "category": 4, "level": 1}, "cert_level_mismatch"),
]


@pytest.mark.parametrize("text,kwargs,code", CERT_ERRORS)
def test_parse_certificate_no_errors(text, kwargs, code):
    with pytest.raises(ValidationError) as err:
        parse_certificate_no(text, today=TODAY, **kwargs)
    assert err.value.code == code


# --- names and addresses -----------------------------------------------------------

VALID_NAMES = [
    ("张三", "张三"),
    ("  张 三 ", "张三"),
    ("我叫李小明", "李小明"),
    ("我的名字是王芳。", "王芳"),
    ("名字是王芳", "王芳"),
    ("姓名：欧阳娜娜", "欧阳娜娜"),
    ("阿依古丽·买买提", "阿依古丽·买买提"),
    ("阿依古丽•买买提", "阿依古丽·买买提"),
    ("阿依古丽・买买提", "阿依古丽·买买提"),
    ("阿依古丽.买买提", "阿依古丽·买买提"),
    ("阿依古丽 · 买买提", "阿依古丽·买买提"),
    ("我叫阿卜杜热合曼·买买提明", "阿卜杜热合曼·买买提明"),
    ("𠮷田", "𠮷田"),  # CJK extension B
    ("John Smith", "John Smith"),
    ("Jean-Luc O'Neil", "Jean-Luc O'Neil"),
    ("José  Núñez", "José Núñez"),
]


@pytest.mark.parametrize("text,expected", VALID_NAMES)
def test_parse_name_valid(text, expected):
    assert parse_name(text) == expected


NAME_ERRORS = [
    ("张", "name_format"),
    ("我叫", "name_format"),
    ("张3", "name_format"),
    ("·张三", "name_format"),
    ("张三·", "name_format"),
    ("阿依古丽··买买提", "name_format"),
    ("张" * 21, "name_format"),
    ("13812345678", "name_format"),
    ("张三 John", "name_format"),
    ("", "name_format"),
]


@pytest.mark.parametrize("text,code", NAME_ERRORS)
def test_parse_name_errors(text, code):
    with pytest.raises(ValidationError) as err:
        parse_name(text)
    assert err.value.code == code


@pytest.mark.parametrize(
    "text,expected",
    [
        ("甘肃省庆阳市西峰区南大街12号", "甘肃省庆阳市西峰区南大街12号"),
        ("我家住在海拉尔区胜利街道 3号楼", "海拉尔区胜利街道3号楼"),
        ("地址：西峰区肖金镇米王村", "西峰区肖金镇米王村"),
        ("某某村１２号", "某某村12号"),
    ],
)
def test_parse_address_valid(text, expected):
    assert parse_address(text) == expected


ADDRESS_ERRORS = [
    ("西峰区", "address_format"),
    ("12345 Main Street", "address_format"),
    ("甘" * 101, "address_format"),
    ("", "address_format"),
]


@pytest.mark.parametrize("text,code", ADDRESS_ERRORS)
def test_parse_address_errors(text, code):
    with pytest.raises(ValidationError) as err:
        parse_address(text)
    assert err.value.code == code


# --- codes and their hints ----------------------------------------------------------


def test_every_code_is_exercised_by_a_test():
    tested = {c for *_, c in ID_ERRORS + PHONE_ERRORS + CERT_ERRORS + NAME_ERRORS + ADDRESS_ERRORS}
    assert tested == set(CODES)


def test_codes_raised_in_source_are_declared():
    source = Path(v.__file__).read_text(encoding="utf-8")
    raised = set(re.findall(r'ValidationError\("(\w+)"\)', source))
    assert raised == set(CODES)


def test_validation_yaml_has_a_hint_for_every_code_and_no_other():
    hints = yaml.safe_load((ROOT / "content/common/validation.yaml").read_text(encoding="utf-8"))
    assert set(hints) == set(CODES)
    for code, hint in hints.items():
        assert isinstance(hint, str) and re.search(r"[\u4e00-\u9fff]", hint), code
        assert len(hint) <= 40, (code, len(hint))
        assert hint.endswith("。"), code


def test_unknown_code_is_a_programming_error():
    with pytest.raises(AssertionError):
        ValidationError("no_such_code")
