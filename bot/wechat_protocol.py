"""WeChat passive-message protocol: signatures, safe-mode AES, XML in and out.

Pure and synchronous. The HTTP layer hands in the query mapping and the raw body
and gets back an ``Incoming`` or a ``ProtocolError`` carrying the status to answer
with; dialog code never sees XML.

Stricter than wechatpy: constant-time signature checks, replay window, body cap,
no DTDs at all, strict PKCS#7/base64/length framing on decrypt, and every failure
on untrusted input surfaces as ``ProtocolError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import secrets
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, overload
from xml.parsers import expat

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.clock import protocol_time

__all__ = ["ProtocolError", "Incoming", "WeChatProtocol", "message_xml"]

# With no DTD nothing expands, so a field is at most as long as the body; this bounds it even where a
# larger body is allowed. The dialog caps what it reads of a long text itself.
MAX_FIELD_CHARS = 64 * 1024


class ProtocolError(Exception):
    """A request we refuse; ``status`` is the HTTP status, ``reason`` is safe to log."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.skew_s: float | None = None  # a correctly signed message whose timestamp is out of the window


@dataclass(frozen=True, slots=True)
class Incoming:
    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    msg_id: str | None = None
    content: str | None = None
    recognition: str | None = None
    media_id: str | None = None
    pic_url: str | None = None
    event: str | None = None
    event_key: str | None = None

    @property
    def dedup_id(self) -> str:
        if self.msg_id:
            return self.msg_id
        return f"ev:{self.create_time}:{self.event}:{self.event_key or ''}"

    @property
    def order(self) -> tuple[int, int]:
        m = self.msg_id
        # Length cap: int() of a huge digit string is slow (and capped by Python).
        if m is not None and m.isascii() and m.isdigit() and len(m) <= 20:
            return (self.create_time, int(m))
        return (self.create_time, 0)


# XML 1.0 forbids these; a reply containing one would be rejected by WeChat.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_REQUIRED = ("ToUserName", "FromUserName", "CreateTime", "MsgType")


def _cdata(value: str) -> str:
    value = _INVALID_XML_CHARS.sub("", value).replace("]]>", "]]]]><![CDATA[>")
    return f"<![CDATA[{value}]]>"


def _is_uint(s: str) -> bool:
    return s.isascii() and s.isdigit() and len(s) <= 12


def _parse_xml(body: bytes | str) -> dict[str, str | None]:
    """Strict flat parse of ``<xml>`` -> {tag: text}; None marks a nested or repeated tag."""
    if isinstance(body, str):
        text = body
    else:
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(400, "body is not UTF-8") from None
    text = text.removeprefix("\ufeff")
    # XML never contains U+0000; with it, expat may take "<\0" for UTF-16 and parse another text.
    if "\x00" in text:
        raise ProtocolError(400, "malformed XML")
    # No DTD anywhere: a DOCTYPE declares the entities that expand (a 1.5 KB body once took 61 s). A
    # first pass of expat with only a DOCTYPE/ENTITY handler set stops at the declaration, before
    # any entity is expanded, wherever it hides (after a comment holding "<xml", a BOM, a PI); the
    # C tree builder then parses a text known to have none.
    if _MAY_DECLARE.search(text) and _declares_dtd(text):
        raise ProtocolError(400, "DTD not allowed")
    try:
        # The C parser and tree builder: a Python target (to hook DOCTYPEs) cost a tenth of a turn.
        root = ET.fromstring(text)
    except Exception:  # ParseError, or ValueError for unencodable str input
        raise ProtocolError(400, "malformed XML") from None
    if root.tag != "xml":
        raise ProtocolError(400, "root element is not <xml>")
    fields: dict[str, str | None] = {}
    for child in root:
        tag = child.tag
        fields[tag] = None if (tag in fields or len(child)) else (child.text or "")
        if len(fields[tag] or "") > MAX_FIELD_CHARS:
            raise ProtocolError(413, f"{tag[:40]} longer than {MAX_FIELD_CHARS} characters")
    return fields


# A DTD is declared only by the literal "<!DOCTYPE" (the text is a str: no declared encoding can spell it
# otherwise); a text without it (nearly every message) skips the first pass. Any case: kept conservative.
_MAY_DECLARE = re.compile("<!doctype", re.IGNORECASE)


class _Dtd(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise _Dtd


def _declares_dtd(text: str) -> bool:
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(text, True)
    except _Dtd:
        return True
    except expat.ExpatError:
        return False  # malformed: the tree builder refuses it as such
    return False


@overload
def _field(fields: Mapping[str, str | None], name: str, required: Literal[True]) -> str: ...
@overload
def _field(fields: Mapping[str, str | None], name: str, required: bool = False) -> str | None: ...
def _field(fields: Mapping[str, str | None], name: str, required: bool = False) -> str | None:
    if name not in fields:
        if required:
            raise ProtocolError(400, f"missing {name}")
        return None
    value = fields[name]
    if value is None:
        raise ProtocolError(400, f"{name} is not a plain string")
    return value


_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _incoming(fields: Mapping[str, str | None]) -> Incoming:
    to_user, from_user, create_time, msg_type = (_field(fields, n, required=True).strip() for n in _REQUIRED)
    if not (to_user and from_user and msg_type):
        raise ProtocolError(400, "empty ToUserName/FromUserName/MsgType")
    # An openid is 28 characters of [A-Za-z0-9_-]; it names keys in Redis, so nothing else is taken.
    if not _OPENID.fullmatch(from_user):
        raise ProtocolError(400, "FromUserName is not an openid")
    if not _is_uint(create_time):
        raise ProtocolError(400, "bad CreateTime")

    def opt(name: str) -> str | None:
        value = _field(fields, name)
        return None if value is None else value.strip()

    event = opt("Event")
    return Incoming(
        to_user=to_user,
        from_user=from_user,
        create_time=int(create_time),
        msg_type=msg_type.lower(),
        msg_id=opt("MsgId") or None,
        content=_field(fields, "Content"),  # user text is kept verbatim
        recognition=opt("Recognition"),
        media_id=opt("MediaId"),
        pic_url=opt("PicUrl"),
        event=None if event is None else event.lower(),
        event_key=opt("EventKey"),
    )


def _new_nonce() -> str:
    return str(secrets.randbelow(10**10))


def _get(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError(400, f"missing {name}")
    return value


class WeChatProtocol:
    def __init__(
        self,
        token: str,
        appid: str = "",
        encoding_aes_key: str = "",
        *,
        max_skew_s: int = 300,
        max_body_bytes: int = 65536,
        clock: Callable[[], float] = protocol_time,
        compatible_mode: bool = False,
    ):
        # With an EncodingAESKey, WeChat sends safe mode (Encrypt only) or, when the account is set to
        # 兼容模式, both; a plaintext message then is accepted only when that mode is configured.
        self.compatible_mode = compatible_mode
        if not token:
            raise ValueError("WeChat token must not be empty")
        self.token = token
        self.appid = appid
        self.max_skew_s = max_skew_s
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._appid_bytes = appid.encode()
        self._cipher: Cipher | None = None
        if encoding_aes_key:
            try:
                key = base64.b64decode(encoding_aes_key + "=", validate=True)
            except ValueError:
                key = b""
            if len(encoding_aes_key) != 43 or len(key) != 32:
                raise ValueError("EncodingAESKey must be 43 base64 characters")
            # WeChat's scheme: AES-256-CBC, IV = first 16 key bytes.
            self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    # -- signatures ---------------------------------------------------------------

    def sign(self, *parts: str) -> str:
        return hashlib.sha1("".join(sorted((self.token, *parts))).encode()).hexdigest()

    def _check_signature(self, given: str, reason: str, *parts: str) -> None:
        expected = self.sign(*parts)
        # compare_digest raises TypeError on non-ASCII str, so screen that first.
        if not (given.isascii() and hmac.compare_digest(expected, given)):
            raise ProtocolError(403, reason)

    def _timestamp_nonce(self, query: Mapping[str, str]) -> tuple[str, str]:
        timestamp, nonce = _get(query, "timestamp"), _get(query, "nonce")
        if not _is_uint(timestamp):
            raise ProtocolError(400, "timestamp is not an integer")
        if not (nonce.isascii() and len(nonce) <= 128):
            raise ProtocolError(400, "bad nonce")
        return timestamp, nonce

    def _check_fresh(self, timestamp: str) -> None:
        skew = int(timestamp) - self._clock()
        if abs(skew) > self.max_skew_s:
            error = ProtocolError(403, "stale timestamp")
            error.skew_s = skew  # signed correctly, so this is WeChat's clock against ours
            raise error

    # -- AES (safe mode) ----------------------------------------------------------

    def _encrypt(self, xml: bytes) -> str:
        if self._cipher is None:
            raise ValueError("no EncodingAESKey configured")
        # 16 random bytes | big-endian length | xml | appid, PKCS#7 to 32-byte blocks.
        data = secrets.token_hex(8).encode() + struct.pack(">I", len(xml)) + xml + self._appid_bytes
        pad = 32 - len(data) % 32
        data += bytes((pad,)) * pad
        enc = self._cipher.encryptor()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode()

    def _decrypt(self, encrypt: str) -> bytes:
        if self._cipher is None:
            raise ValueError("no EncodingAESKey configured")
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except ValueError:
            raise ProtocolError(400, "Encrypt is not base64") from None
        if not raw or len(raw) % 16:
            raise ProtocolError(400, "bad ciphertext length")
        dec = self._cipher.decryptor()
        plain = dec.update(raw) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= 32 or plain[-pad:] != bytes((pad,)) * pad:
            raise ProtocolError(400, "bad padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise ProtocolError(400, "bad payload")
        (length,) = struct.unpack(">I", content[:4])
        if 4 + length > len(content):
            raise ProtocolError(400, "bad payload length")
        if self._appid_bytes and not hmac.compare_digest(content[4 + length :], self._appid_bytes):
            raise ProtocolError(403, "appid mismatch")
        return content[4 : 4 + length]

    # -- server side --------------------------------------------------------------

    def verify_url(self, query: Mapping[str, str]) -> str:
        signature = _get(query, "signature")
        timestamp, nonce = self._timestamp_nonce(query)
        echostr = _get(query, "echostr")
        self._check_signature(signature, "bad signature", timestamp, nonce)
        self._check_fresh(timestamp)
        return echostr

    def parse(self, query: Mapping[str, str], body: bytes) -> tuple[Incoming, bool]:
        timestamp, nonce = self._timestamp_nonce(query)
        encrypt_type = query.get("encrypt_type") or "raw"
        if encrypt_type not in ("raw", "aes"):
            raise ProtocolError(400, "unsupported encrypt_type")
        encrypted = encrypt_type == "aes"
        if encrypted and self._cipher is None:
            raise ProtocolError(400, "encrypted message but no EncodingAESKey configured")
        if len(body) > self.max_body_bytes:
            raise ProtocolError(413, "body too large")
        if not body:
            raise ProtocolError(400, "empty body")
        if encrypted:
            msg_signature = _get(query, "msg_signature")
            encrypt = _field(_parse_xml(body), "Encrypt", required=True)
            self._check_signature(msg_signature, "bad msg_signature", timestamp, nonce, encrypt)
            self._check_fresh(timestamp)
            fields = _parse_xml(self._decrypt(encrypt))
        else:
            if self._cipher is not None and not self.compatible_mode:
                raise ProtocolError(403, "plaintext message to an account in safe mode")
            # Plain mode signs only the query, never the body: that is WeChat's design.
            self._check_signature(_get(query, "signature"), "bad signature", timestamp, nonce)
            self._check_fresh(timestamp)
            fields = _parse_xml(body)
        message = _incoming(fields)
        # WeChat puts the sender in the query too: a body naming someone else is not from WeChat.
        if "openid" in query and query["openid"] != message.from_user:
            raise ProtocolError(403, "openid in the query is not the message's sender")
        return message, encrypted

    def render_text(
        self,
        incoming: Incoming,
        text: str,
        encrypted: bool,
        *,
        nonce: str | None = None,
        timestamp: int | None = None,
    ) -> str:
        ts = int(self._clock()) if timestamp is None else int(timestamp)
        xml = (
            f"<xml><ToUserName>{_cdata(incoming.from_user)}</ToUserName>"
            f"<FromUserName>{_cdata(incoming.to_user)}</FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{_cdata(text)}</Content></xml>"
        )
        if not encrypted:
            return xml
        nonce = nonce or _new_nonce()
        encrypt = self._encrypt(xml.encode())
        return (
            f"<xml><Encrypt>{_cdata(encrypt)}</Encrypt>"
            f"<MsgSignature>{_cdata(self.sign(str(ts), nonce, encrypt))}</MsgSignature>"
            f"<TimeStamp>{ts}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>"
        )

    # -- client side (plays WeChat's server: simulator, tests, benchmark) ---------

    def build_request(
        self,
        plain_xml: str,
        *,
        encrypted: bool,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        ts = str(int(self._clock()) if timestamp is None else timestamp)
        nonce = nonce or _new_nonce()
        query = {"signature": self.sign(ts, nonce), "timestamp": ts, "nonce": nonce}
        try:
            fields = _parse_xml(plain_xml)
        except ProtocolError:  # callers may deliberately send garbage
            fields = {}
        if from_user := fields.get("FromUserName"):
            query["openid"] = from_user
        if not encrypted:
            return query, plain_xml.encode()
        encrypt = self._encrypt(plain_xml.encode())
        query["encrypt_type"] = "aes"
        query["msg_signature"] = self.sign(ts, nonce, encrypt)
        body = f"<xml><ToUserName>{_cdata(fields.get('ToUserName') or '')}</ToUserName><Encrypt>{_cdata(encrypt)}</Encrypt></xml>"
        return query, body.encode()

    def decode_reply(self, body: bytes | str, *, encrypted: bool) -> dict[str, str]:
        success = b"success" if isinstance(body, bytes) else "success"
        if body.strip() in (success, success[:0]):
            return {}
        fields = _parse_xml(body)
        if encrypted:
            encrypt = _field(fields, "Encrypt", required=True)
            timestamp = _field(fields, "TimeStamp", required=True)
            nonce = _field(fields, "Nonce", required=True)
            signature = _field(fields, "MsgSignature", required=True)
            self._check_signature(signature, "bad msg_signature", timestamp, nonce, encrypt)
            fields = _parse_xml(self._decrypt(encrypt))
        return {k: v for k, v in fields.items() if v is not None}


_msg_seq = itertools.count()


def message_xml(
    *,
    from_user: str,
    to_user: str = "gh_test",
    msg_type: str = "text",
    create_time: int | None = None,
    msg_id: int | None = None,
    content: str | None = None,
    recognition: str | None = None,
    media_id: str | None = None,
    pic_url: str | None = None,
    event: str | None = None,
    event_key: str | None = None,
) -> str:
    """A push XML shaped like WeChat's (field order as in the official docs)."""
    ct = int(protocol_time()) if create_time is None else create_time
    is_event = msg_type == "event"
    if msg_id is None and not is_event:
        # Unique and increasing within a second, like WeChat's ids, so order/dedup work.
        msg_id = (ct << 20) | (next(_msg_seq) & 0xFFFFF)
    if msg_type in ("voice", "image") and media_id is None:
        media_id = f"media_{msg_id}"
    if msg_type == "image" and pic_url is None:
        pic_url = f"http://mmbiz.qpic.cn/mmbiz/{msg_id}/0"
    out = [
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>",
        f"<FromUserName>{_cdata(from_user)}</FromUserName>",
        f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata(msg_type)}</MsgType>",
    ]
    for tag, value in (
        ("Content", content),
        ("PicUrl", pic_url),
        ("MediaId", media_id),
        ("Format", "amr" if msg_type == "voice" else None),
        ("Recognition", recognition),
        ("Event", event),
        ("EventKey", event_key),
    ):
        if value is not None:
            out.append(f"<{tag}>{_cdata(value)}</{tag}>")
    if not is_event:
        out.append(f"<MsgId>{msg_id}</MsgId>")
    out.append("</xml>")
    return "".join(out)
