"""Notices as WeChat shows them: the template and subscription forms of a pushed message, with WeChat's rules.

A notice is what the notifier knows about a message (its kind and the values that fill it, e.g.
reference, service, label); content/common/notices.yaml says, per kind, which template keyword each value
fills. The rules and their sources are quoted there. Both the sender (integrations/wechat_api.py) and the
WeChat sandbox use these functions: the sender to send only what WeChat would show, the sandbox to show it
as WeChat would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("accepted", "result", "materials_missing", "assessment_reminder", "session_moved", "pickup")
GENERIC = "progress"  # the layout of the older single template (WECHAT_TEMPLATE_ID)
TEMPLATE_FIELD_UNITS = 20
DROPPED_BY_WECHAT = ("first", "remark")  # not shown since 2023-05-04
ELLIPSIS = "…"

_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def template_units(text: str) -> int:
    """How WeChat counts a template keyword: a run of ASCII letters or digits is one unit, any other character one."""
    return len(_ALNUM_RUN.sub("a", text))


def one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", str(text)).strip()


def fit_template(text: str, limit: int = TEMPLATE_FIELD_UNITS) -> str:
    """One line of at most `limit` units, cut with an ellipsis as WeChat itself would cut it."""
    text = one_line(text)
    if template_units(text) <= limit:
        return text
    pieces = re.findall(r"[A-Za-z0-9]+|.", text)  # one unit each
    return "".join(pieces[: limit - 1]).rstrip() + ELLIPSIS


# -- subscription notices (subscribe/bizsend): per field type, refused when over, so fitted before sending --
def field_type(key: str) -> str:
    return key.rstrip("0123456789")


def fit_subscribe(key: str, value: str) -> str:
    kind, value = field_type(key), one_line(value)
    if kind == "thing":
        return value if len(value) <= 20 else value[:19] + ELLIPSIS
    if kind == "phrase":
        return "".join(_HAN.findall(value))[:5]
    if kind in ("character_string", "letter"):
        return "".join(c for c in value if "!" <= c <= "~")[:32]
    if kind == "number":
        return "".join(c for c in value if c.isascii() and (c.isdigit() or c == "."))[:32]
    return value


_SUBSCRIBE_VALID = {
    "thing": lambda v: 0 < len(v) <= 20,
    "phrase": lambda v: 0 < len(v) <= 5 and all(_HAN.fullmatch(c) for c in v),
    "character_string": lambda v: 0 < len(v) <= 32 and all("!" <= c <= "~" for c in v),
    "number": lambda v: 0 < len(v) <= 32 and re.fullmatch(r"\d+(\.\d+)?", v) is not None,
    "letter": lambda v: 0 < len(v) <= 32 and v.isascii() and v.isalpha(),
    "time": lambda v: re.fullmatch(r"[\d年月日 :~\-/]+", v) is not None and any(c.isdigit() for c in v),
    "date": lambda v: re.fullmatch(r"[\d年月日 :~\-/]+", v) is not None and any(c.isdigit() for c in v),
}


def subscribe_value_ok(key: str, value: str) -> bool:
    """What WeChat accepts in a subscription notice field (unknown types: any non-empty value)."""
    check = _SUBSCRIBE_VALID.get(field_type(key))
    return bool(value) if check is None else bool(check(value))


# -- the layouts of content/common/notices.yaml -------------------------------------------------------
class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class Layout:
    title: str
    fields: tuple[tuple[str, str, str], ...]  # (key, label, value format)


@dataclass
class Notices:
    """The layouts from content and the template ids from configuration."""

    content: dict[str, Any]
    template_ids: dict[str, str] = field(default_factory=dict)  # kind -> template id (GENERIC: the older setting)
    subscribe_ids: dict[str, str] = field(default_factory=dict)  # kind -> subscription template id

    def layout(self, kind: str, form: str) -> Layout | None:
        spec = self.content.get("kinds", {}).get(kind)
        if not spec or not spec.get(form):
            return None
        return Layout(spec.get("title", ""), tuple((f["key"], f["label"], str(f["value"])) for f in spec[form]))

    def name(self, kind: str) -> str:
        return self.content.get("kinds", {}).get(kind, {}).get("name", kind)

    def kind_of_status(self, status: str) -> str:
        return self.content.get("status_kinds", {}).get(status, "result")

    def phrase(self, status: str) -> str:
        return self.content.get("phrases", {}).get(status, "")

    def empty(self) -> str:
        return self.content.get("empty", "无")

    def unconfigured(self, kinds=KINDS) -> list[str]:
        """The kinds no template nor subscription notice can carry outside the 48-hour window."""
        generic = bool(self.template_ids.get(GENERIC))
        return [k for k in kinds if not (self.template_ids.get(k) or self.subscribe_ids.get(k) or generic)]

    def template_payload(self, openid: str, notice: dict[str, Any]) -> dict[str, Any] | None:
        kind = notice.get("kind", "")
        template_id, layout_kind = self.template_ids.get(kind), kind
        if not template_id and self.template_ids.get(GENERIC):
            template_id, layout_kind = self.template_ids[GENERIC], GENERIC
        layout = self.layout(layout_kind, "template") if template_id else None
        if layout is None:
            return None
        values = _Blank(notice.get("values", {}))
        data = {key: {"value": fit_template(fmt.format_map(values)) or self.empty()} for key, _, fmt in layout.fields}
        return {"touser": openid, "template_id": template_id, "data": data}

    def subscribe_payload(self, openid: str, notice: dict[str, Any]) -> dict[str, Any] | None:
        """bizsend's body: {touser, template_id, page?, miniprogram?, data: {key: {value}}} (as silenceper/wechat's
        officialaccount/message Subscribe sends it); no page: the notice is read in the chat, nothing to open."""
        kind = notice.get("kind", "")
        template_id = self.subscribe_ids.get(kind)
        layout = self.layout(kind, "subscribe") if template_id else None
        if layout is None:
            return None
        values = _Blank(notice.get("values", {}))
        data = {}
        for key, _, fmt in layout.fields:
            value = fit_subscribe(key, fmt.format_map(values))
            if not subscribe_value_ok(key, value):
                value = fit_subscribe(key, self.empty())
            data[key] = {"value": value}
        return {"touser": openid, "template_id": template_id, "data": data}

    def sandbox_templates(self, form: str, prefix: str) -> dict[str, Layout]:
        """The templates a development sandbox knows: one per kind, its id `prefix + kind`."""
        out = {}
        for kind in (*KINDS, GENERIC):
            if layout := self.layout(kind, form):
                out[prefix + kind] = layout
        return out


def sandbox_ids(prefix: str, kinds=(*KINDS, GENERIC)) -> dict[str, str]:
    return {k: prefix + k for k in kinds}


def shared_notices_content() -> dict[str, Any]:
    """content/common/notices.yaml, for a client or sandbox built without a policy pack."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parent.parent / "content" / "common" / "notices.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
