"""The official account's custom menu, built from content/common/menu.yaml under WeChat's rules.

WeChat's createCustomMenu (POST /cgi-bin/menu/create) takes at most 3 top-level buttons with at most 5
sub-buttons each; a top-level name is at most 16 bytes (4 Chinese characters), a sub-button's at most
60 bytes; a click button's key at most 128 bytes (errcodes 40016, 40018, 40019, 40017 for a bad type).
An item of menu.yaml with `group: 名字` goes under the top-level button of that name. The same checks
run here, before anything is sent, and in the WeChat sandbox, which refuses what WeChat would.
"""

from __future__ import annotations

from typing import Any

MAX_BUTTONS, MAX_SUB_BUTTONS = 3, 5
MAX_NAME_BYTES, MAX_SUB_NAME_BYTES, MAX_KEY_BYTES = 16, 60, 128
# What the phone shows before "...": 4 characters at the top, 8 below (WeChat's documentation).
SHOWN_CHARS, SHOWN_SUB_CHARS = 4, 8


class MenuError(ValueError):
    """The menu breaks one of WeChat's rules; `errcode` is what WeChat would answer."""

    def __init__(self, errcode: int, message: str):
        super().__init__(message)
        self.errcode = errcode


def menu_payload(items: list[dict[str, Any]]) -> dict[str, Any]:
    """menu.yaml's items as WeChat's `{"button": [...]}`; MenuError when WeChat would refuse it."""
    buttons: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for item in items:
        click = {"type": "click", "name": str(item["label"]), "key": str(item["key"])}
        group = item.get("group")
        if not group:
            buttons.append(click)
        elif group in groups:
            groups[group]["sub_button"].append(click)
        else:
            groups[group] = {"name": str(group), "sub_button": [click]}
            buttons.append(groups[group])
    payload = {"button": buttons}
    check_menu(payload)
    for button in buttons:
        for name, shown in [(button["name"], SHOWN_CHARS)] + [
            (sub["name"], SHOWN_SUB_CHARS) for sub in button.get("sub_button", [])
        ]:
            if len(name) > shown:
                raise MenuError(40018, f"{name}: would be cut to {shown} characters and '...' on the phone")
    return payload


def check_menu(payload: Any) -> None:
    buttons = payload.get("button") if isinstance(payload, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise MenuError(40016, f"the menu needs 1 to {MAX_BUTTONS} top-level buttons")
    for button in buttons:
        _check_button(button, MAX_NAME_BYTES)
        subs = button.get("sub_button")
        if subs:
            if len(subs) > MAX_SUB_BUTTONS:
                raise MenuError(40023, f"{button['name']}: at most {MAX_SUB_BUTTONS} sub-buttons")
            for sub in subs:
                _check_button(sub, MAX_SUB_NAME_BYTES)
                if sub.get("sub_button"):
                    raise MenuError(40016, "sub-buttons cannot have sub-buttons")
        elif button.get("type") != "click":
            raise MenuError(40017, f"{button.get('name')}: a button without sub-buttons must be a click button")


def _check_button(button: Any, max_name: int) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("name"), str) or not button["name"]:
        raise MenuError(40018, "every button needs a name")
    if len(button["name"].encode()) > max_name:
        raise MenuError(40018, f"{button['name']}: a name of at most {max_name} bytes")
    if button.get("sub_button"):
        return
    if button.get("type") != "click":
        raise MenuError(40017, f"{button['name']}: only click buttons are used here")
    key = button.get("key")
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES:
        raise MenuError(40019, f"{button['name']}: a key of 1 to {MAX_KEY_BYTES} bytes")
