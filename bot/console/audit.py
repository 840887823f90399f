"""The audit log: every staff action and every view of personal data in full, append-only.

One Redis stream (bot/console/keys.py): the console only ever adds to it and reads it; nothing edits
an entry. An entry says who (user name and role), when (the bot's clock), what (the action and its
target, an application id, never personal data) and from where (the address). Entries older than the
pack's retention.audit_days are dropped as new ones are added: the stream's ids are Redis's own time,
so the cut is by Redis's TIME, whatever day the bot's clock is told to act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.clock import Clock
from bot.console import keys
from integrations.redis_connection import RedisClient

# What an entry's action means, for the admins' page.
ACTIONS = {
    "login": "登录",
    "login_failed": "登录失败",
    "login_limited": "登录被限制（错误次数过多）",
    "logout": "退出",
    "search": "查询",
    "view_case": "查看案件（已遮盖）",
    "unmask": "显示完整个人信息",
    "print_form": "打印申请表（含完整个人信息）",
    "view_audit": "查看审计日志",
    "retry_delivery": "重新送达受理平台",
    "roster": "查看评定名单（含姓名、电话）",
    "record_call": "记录电话联系",
    "window_intake": "开始窗口受理",
    "window_submitted": "窗口受理提交申请",
    "window_receipt": "打印受理回执（含绑定码）",
    "roster_xlsx": "下载评定名单 xlsx（含姓名、电话）",
    "refused": "越权访问被拒绝",
    "move_session": "评定场次改期",
    "move_session_refused": "评定场次改期（未通过校验，未执行）",
    "announce_mental": "通知精神残疾评定场次",
    "announce_refused": "通知精神残疾评定场次（未通过校验，未执行）",
    "revoke_binding": "解除家属绑定",
    "close_ticket": "关闭人工工单",
    "resend_push": "重新发送微信通知",
    "view_photo": "查看群众发来的照片（可能含完整个人信息）",
}


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: str
    user: str
    role: str
    action: str
    target: str
    detail: str
    address: str

    @property
    def action_label(self) -> str:
        return ACTIONS.get(self.action, self.action)


class AuditLog:
    def __init__(self, client: RedisClient, clock: Clock, *, retention_s: int = 365 * 86400):
        self.redis = client
        self.clock = clock
        self.retention_s = retention_s

    async def record(self, *, user: str, role: str, action: str, address: str, target: str = "", detail: str = "") -> None:
        at = self.clock.now().isoformat(timespec="seconds")
        fields = {"at": at, "user": user, "role": role, "action": action, "target": target, "detail": detail, "address": address}
        seconds, _ = await self.redis.time()
        oldest_kept = f"{(int(seconds) - self.retention_s) * 1000}-0"
        await self.redis.xadd(keys.AUDIT_STREAM, fields, minid=oldest_kept, approximate=False)

    async def latest(self, count: int = 200, *, before: str | None = None) -> list[AuditEntry]:
        """Newest first; `before` an entry id to page back from."""
        top = f"({before}" if before else "+"
        rows = await self.redis.xrevrange(keys.AUDIT_STREAM, max=top, min="-", count=count)
        return [_entry(entry_id, fields) for entry_id, fields in rows]


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> AuditEntry:
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return AuditEntry(
        entry_id.decode(),
        f.get("at", ""),
        f.get("user", ""),
        f.get("role", ""),
        f.get("action", ""),
        f.get("target", ""),
        f.get("detail", ""),
        f.get("address", ""),
    )
