"""Bad input, systematically: POST /wechat through the real app on loopback, with hypothesis.

WeChat's side is played with wechatpy's PrpCrypto (safe mode) or a signed query (plain mode); the
XML inside is a valid message from message_xml, then mutated. Properties:
- never a 500: 200 with a kind reply (or "success"), or a short 4xx for a bad envelope or signature;
- the server keeps answering: a canary citizen gets the normal first question after every case;
- no state corruption: a citizen mid-conversation who gets garbage (valid signature) keeps every
  answer given so far, and the conversation carries on as in its transcript.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto

from bot.app import PACK, SERVICES
from bot.wechat_channel import WECHAT_TEXT_LIMIT
from bot.wechat_protocol import WeChatProtocol, message_xml
from dialogs.application import FINAL, STEPS
from tests.conftest import SAMPLE_AES_KEY, SAMPLE_APPID, SAMPLE_TOKEN, WeChatUser, _ids, conversations
from tests.fuzz_support import NASTY, characters, count, fuzz, leaves, nasty_text, traceback_free
from tests.test_transcripts import _as_list

TESTS = Path(__file__).parent
CORPUS = sorted((TESTS / "corpus").glob("*.xml"))
SCRIPTS = [TESTS / "transcripts" / name for name in ("01_self_level1_dibao_all_five.yaml", "02_mother_child_intellectual.yaml")]
STATES = {s.name for s in STEPS}
FIRST_QUESTION = "请问是谁申请"
MODES = st.sampled_from(["plain", "aes"])


# -- requests as WeChat sends them ------------------------------------------------------------------
_nonces = itertools.count(1_000_000_000)


def signed(protocol, plain: bytes, mode: str, *, timestamp: int | None = None, nonce: str | None = None) -> tuple[dict, bytes]:
    """Query and body for `plain` (any bytes): signed query (plain mode) or encrypted by wechatpy.
    A fresh nonce each time, as WeChat sends: a signed query is good for one message only."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(next(_nonces))
    query = {"signature": protocol.sign(ts, nonce), "timestamp": ts, "nonce": nonce}
    if mode == "plain":
        return query, plain
    encrypt = PrpCrypto(base64.b64decode(SAMPLE_AES_KEY + "=")).encrypt(plain, SAMPLE_APPID).decode()
    query.update(encrypt_type="aes", msg_signature=protocol.sign(ts, nonce, encrypt))
    return query, f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()


async def post(client, query: dict, body: bytes) -> tuple[int, bytes]:
    resp = await client.post("/wechat", params=query, data=body)
    return resp.status, await resp.read()


def answer_of(client, protocol, status: int, raw: bytes, mode: str) -> str | None:
    """The reply's text for a 200 (checked: fits WeChat, kind, no trace), None for a clear 4xx."""
    assert status in (200, 400, 403, 413), (status, raw[:300])
    if status != 200:
        reason = raw.decode()
        assert 0 < len(reason) <= 100 and traceback_free(reason), reason
        return None
    text = protocol.decode_reply(raw, encrypted=mode == "aes").get("Content", "")
    assert len(text.encode()) <= WECHAT_TEXT_LIMIT
    assert traceback_free(text), text
    assert text != client.server.app[PACK].text("busy"), "the turn failed inside (see the log)"
    return text


# -- hostile XML ------------------------------------------------------------------------------------

OPENIDS = st.one_of(
    st.sampled_from(["oFuzzA", "oFuzzB", "o-{x}*?[", "o" + "界" * 200]), st.text(characters, min_size=1, max_size=30)
)
_LOL = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
DTDS = [
    '<!DOCTYPE xml [<!ENTITY e "EXPANDED">]>',
    f'<!DOCTYPE xml [<!ENTITY lol0 "lol">{_LOL}]>',
    '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>',
    '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd">',
    '<!DOCTYPE xml PUBLIC "-//X//EN" "file:///dev/zero">',
    "<!DOCTYPE xml>",
]
PROLOGS = ["", "\ufeff", "\ufeff\ufeff", " \n", '<?xml version="1.0" encoding="UTF-8"?>', "<!-- c --><?pi x?>\n"]
RAW = [
    b"\x00",
    b"\x01",
    b"\x1b",
    b"\x7f",
    "\u202e".encode(),
    "\ufeff".encode(),
    "😀".encode(),
    b"]]>",
    b"<",
    b"&",
    b"&#0;",
    b"&#xD800;",
    b"\xed\xa0\x80",
    b"\xc0\x80",
    b"\xff\xfe",
    b"<!--",
    b"<?x?>",
    b"<![CDATA[",
    b"</xml>",
    b"<xml>",
]
ENCODINGS = ["gbk", "gb18030", "big5", "utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8"]


@st.composite
def messages(draw, from_user=OPENIDS) -> str:
    kind = draw(st.sampled_from(["text", "text", "voice", "image", "event", "video", "location"]))
    return message_xml(
        from_user=draw(from_user),
        msg_type=kind,
        create_time=int(time.time()),
        content=draw(nasty_text) if kind == "text" else None,
        recognition=draw(nasty_text) if kind == "voice" else None,
        event=draw(st.sampled_from(["subscribe", "CLICK", "VIEW", "SCAN", "", "unsubscribe"])) if kind == "event" else None,
        event_key=draw(st.sampled_from(["MENU_HELP", "MENU_STATUS", "", "NOPE"])) if kind == "event" else None,
    )


@st.composite
def hostile(draw, xml=messages()) -> tuple[str, bytes]:
    """(how it was mutated, the plain XML bytes)."""
    base = draw(xml)
    b = base.encode()
    how = draw(st.sampled_from(["none", "flip", "truncate", "duplicate", "huge", "dtd", "encoding", "insert", "field"]))
    fields = list(re.finditer(rb"<(\w+)>(.*?)</\1>", b))
    field = draw(st.sampled_from(fields))
    if how == "flip":
        out = bytearray(b)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        b = bytes(out)
    elif how == "truncate":
        b = b[: draw(st.integers(0, len(b) - 1))]
    elif how == "duplicate":
        b = b[: field.end()] + field.group(0) * draw(st.integers(1, 3)) + b[field.end() :]
    elif how == "huge":
        filler = draw(st.sampled_from(["A", "界", "😀", "]]>"])) * draw(st.sampled_from([20_000, 1_100_000]))
        b = b[: field.start(2)] + f"<![CDATA[{filler}]]>".encode() + b[field.end(2) :]
    elif how == "dtd":
        entity = draw(st.sampled_from(["&e;", "&lol9;", "&p;", "x"]))
        b = (draw(st.sampled_from(PROLOGS)) + draw(st.sampled_from(DTDS))).encode() + b.replace(
            b"<MsgType>", f"<Content>{entity}</Content><MsgType>".encode(), 1
        )
    elif how == "encoding":
        declared = draw(st.sampled_from([None, *ENCODINGS, "bogus"]))
        text = (f'<?xml version="1.0" encoding="{declared}"?>' if declared else "") + base
        b = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    elif how == "insert":
        at = draw(st.integers(0, len(b)))
        b = b[:at] + draw(st.sampled_from(RAW)) * draw(st.integers(1, 3)) + b[at:]
    elif how == "field":
        value = draw(st.one_of(nasty_text, st.sampled_from(["<a>x</a>", "<![CDATA[a]]>b]]>", "9" * 40, "-1", " "])))
        b = b[: field.start(2)] + value.encode() + b[field.end(2) :]
    return how, b


# -- an unknown sender, hostile XML -------------------------------------------------------------------


@fuzz(3)
@given(case=hostile(), mode=MODES)
async def test_hostile_xml_gets_a_reply_or_a_clear_4xx_and_the_server_keeps_answering(bot_client, protocol, case, mode):
    count()
    how, plain = case
    status, raw = await post(bot_client, *signed(protocol, plain, mode))
    text = answer_of(bot_client, protocol, status, raw, mode)
    if how == "dtd":
        assert status in (400, 413), text  # no DTD is ever parsed, whatever stands before it
    if how == "huge" and len(plain) > 100_000:
        assert status == 413
    assert "root:" not in (text or "") and "lollol" not in (text or "")
    assert FIRST_QUESTION in await WeChatUser(bot_client, "oCanary", protocol).say("你好")


SIGNATURE_FAULTS = st.sampled_from(["drop", "replace", "flip", "stale", "other_token", "upper"])
# What each mode's signature covers; anything else in the query is ignored (encrypt_type "" or "raw" is plain mode).
SIGNED_PARAMS = {
    "plain": {"signature", "timestamp", "nonce", "encrypt_type"},
    "aes": {"msg_signature", "timestamp", "nonce", "encrypt_type"},
}


@fuzz(1)
@given(
    mode=MODES,
    fault=SIGNATURE_FAULTS,
    param=st.sampled_from(["signature", "msg_signature", "timestamp", "nonce", "encrypt_type"]),
    value=st.one_of(st.sampled_from(NASTY[:30]), st.text(characters, max_size=60)),
    skew=st.integers(301, 10**9),
    data=st.data(),
)
async def test_a_wrong_or_missing_signature_is_refused_and_changes_nothing(
    bot_client, protocol, mode, fault, param, value, skew, data
):
    count()
    openid = f"oUnsigned{mode}"
    ts = int(time.time()) + (data.draw(st.sampled_from([-1, 1])) * skew if fault == "stale" else 0)
    query, body = signed(protocol, message_xml(from_user=openid, content="1").encode(), mode, timestamp=ts)
    good = dict(query)
    if fault == "other_token":
        query["signature" if mode == "plain" else "msg_signature"] = WeChatProtocol("not-" + SAMPLE_TOKEN).sign(
            query["timestamp"], query["nonce"]
        )
    elif fault == "upper":
        query = {k: v.upper() if k.endswith("signature") else v for k, v in query.items()}
    elif fault == "drop":
        query.pop(param, None)
    elif fault == "replace":
        query[param] = value
    elif fault == "flip" and param in query:
        at = data.draw(st.integers(0, len(query[param]) - 1))
        query[param] = query[param][:at] + data.draw(st.sampled_from("0123456789abcdef٣x")) + query[param][at + 1 :]
    ignored = param not in SIGNED_PARAMS[mode] or (
        mode == "plain" and param == "encrypt_type" and query.get(param) in ("", "raw")
    )
    assume(fault == "stale" or (query != good and not (fault in ("drop", "replace", "flip") and ignored)))
    status, raw = await post(bot_client, query, body)
    assert status in (400, 403), (fault, param, query, status, raw[:200])
    assert traceback_free(raw.decode())
    assert await conversations(bot_client).store.load(openid) is None, "a refused message must not reach the dialog"


async def test_the_corpus_of_nasty_xml_is_refused_or_answered_as_named(bot_client, protocol):
    """tests/corpus/refuse_*.xml must get a 400, reply_*.xml a kind reply, in plain and in safe mode."""
    wrong = []
    for path in CORPUS:
        for mode in ("plain", "aes"):
            count()
            status, raw = await post(bot_client, *signed(protocol, path.read_bytes(), mode))
            text = answer_of(bot_client, protocol, status, raw, mode)
            if (status, bool(text)) != ((400, False) if path.name.startswith("refuse_") else (200, True)):
                wrong.append(f"{path.name} ({mode}): {status} {text or raw[:80]!r}")
    assert not wrong, "\n".join(wrong)
    assert FIRST_QUESTION in await WeChatUser(bot_client, "oCanary", protocol).say("你好")


# -- garbage in the middle of a conversation ---------------------------------------------------------


@dataclass
class Walk:
    """A transcript played once; before[k] is the session as it was when answer k was sent."""

    user: WeChatUser
    said: list[tuple[str, list[str]]]  # each answer and what its reply must contain
    before: list[dict | None]

    def __repr__(self) -> str:  # hypothesis prints it with every failing case
        return f"Walk({self.user.openid})"

    @property
    def store(self):
        return conversations(self.user.client).store

    async def back_to(self, k: int) -> dict | None:
        """Put the citizen back where they were before answer k (through the app's own store)."""
        session = self.before[k]
        if session is None:
            await self.store.forget_user(self.user.openid)
        else:
            async with self.store.turn(self.user.openid, (0, 0), "", wait_s=2) as turn:
                await self.store.save(turn, session, "")
        return session

    async def session(self) -> dict | None:
        return await self.store.load(self.user.openid)


@pytest.fixture
async def walks(bot_client, protocol, clock) -> list[Walk]:
    played = []
    for path in SCRIPTS:
        script = yaml.safe_load(path.read_text(encoding="utf-8"))
        clock.set(script["now"])
        walk = Walk(WeChatUser(bot_client, f"oWalk{path.stem[:2]}", protocol), [], [])
        for step in script["steps"]:
            walk.before.append(await walk.session())
            expected = _as_list(step["expect"])
            reply = await walk.user.say(str(step["say"]))
            assert all(e in reply for e in expected), (step, reply)
            walk.said.append((str(step["say"]), expected))
        played.append(walk)
    return played


async def assert_intact(walk: Walk, before: dict | None, after: dict | None) -> None:
    """A well-formed session that still holds every answer `before` held (or, when the garbage was
    a yes that submitted, an application that holds them: a submitted session keeps no form data)."""
    if before is None and after is None:
        return  # a mutated FromUserName, or an event: nothing for this citizen
    assert after is not None and after["state"] in STATES and set(after["history"]) <= STATES, after
    if before is None:
        return
    assert after["data"]["reference"] == before["data"]["reference"]
    if after["state"] == FINAL != before["state"]:
        document = await walk.user.client.server.app[SERVICES].outbox.get(before["data"]["reference"])
        assert document is not None, "submitted, but no application in the outbox"
        for who in ("applicant", "agent"):
            given, sent = before["data"].get(who) or {}, document.get(who) or {}
            assert {k: sent[k] for k in given if k in sent} == {k: v for k, v in given.items() if k in sent}, who
        return
    assert after["history"][: len(before["history"])] == before["history"], (before["history"], after["history"])
    kept = leaves(after["data"])
    lost = {path: value for path, value in leaves(before["data"]).items() if path not in kept or kept[path] != value}
    assert not lost, f"answers lost or changed: {lost}"


def where(session: dict | None) -> tuple:
    return ("who", 0) if session is None else (session["state"], len(session["history"]))


async def garbage_then_carry_on(walk: Walk, k: int, send) -> None:
    """Garbage at step k, then the real answer k: every earlier answer is kept, and when the garbage
    was not taken as an answer the conversation carries on exactly as in its transcript."""
    before = await walk.back_to(k)
    text = await send()
    after = await walk.session()
    if text is None:
        assert after == before, "a refused message changed the conversation"
        after = before
    else:
        await assert_intact(walk, before, after)
    if where(after) == where(before):
        answer, expected = walk.said[k]
        reply = await walk.user.say(answer)
        assert all(e in reply for e in expected), (k, answer, reply)


async def send_as(walk: Walk, protocol, plain: bytes, mode: str) -> str | None:
    status, raw = await post(walk.user.client, *signed(protocol, plain, mode))
    return answer_of(walk.user.client, protocol, status, raw, mode)


@fuzz(0.3)
@given(data=st.data(), mode=MODES, voice=st.booleans())
async def test_random_text_at_every_step_of_the_dialog_is_answered_and_loses_nothing(walks, protocol, data, mode, voice):
    """Typed, or as voice recognition writes it."""
    count()
    walk = data.draw(st.sampled_from(walks))
    texts = data.draw(st.lists(nasty_text, min_size=len(walk.said), max_size=len(walk.said)))
    for k, text in enumerate(texts):
        said = {"msg_type": "voice", "recognition": text} if voice else {"msg_type": "text", "content": text}
        xml = walk.user.xml(msg_id=next(_ids), **said).encode()

        async def send(xml=xml):
            answer = await send_as(walk, protocol, xml, mode)
            assert answer, f"no reply to a message: {answer!r}"
            return answer

        await garbage_then_carry_on(walk, k, send)


@fuzz(2)
@given(data=st.data(), mode=MODES)
async def test_hostile_xml_from_a_citizen_mid_conversation_loses_nothing(walks, protocol, data, mode):
    count()
    walk = data.draw(st.sampled_from(walks))
    k = data.draw(st.integers(0, len(walk.said) - 1))
    _how, plain = data.draw(hostile(messages(from_user=st.just(walk.user.openid))))
    assume(b"unsubscribe" not in plain)  # unsubscribing deletes the conversation, by design
    await garbage_then_carry_on(walk, k, lambda: send_as(walk, protocol, plain, mode))


async def test_a_photo_then_0_at_the_checklist_carries_on(walks, protocol):
    """Found by the property above: after a photo, the "0" the checklist asks for was refused."""
    for walk in walks:
        k = next(i for i, session in enumerate(walk.before) if session and session["state"] == "checklist")
        await garbage_then_carry_on(walk, k, lambda walk=walk: walk.user.image())


async def test_a_yes_at_the_consent_submits_with_every_answer(walks, protocol):
    """The one garbage that ends the conversation: a yes where consent is asked. The form then lives
    in the application, not in the (minimised) session."""
    for walk in walks:
        k = next(i for i, session in enumerate(walk.before) if session and session["state"] == "consent_sensitive")
        await garbage_then_carry_on(walk, k, lambda walk=walk: walk.user.say("同意"))
        assert (await walk.session())["state"] == FINAL
