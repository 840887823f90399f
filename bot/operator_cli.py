"""Operator tools for the county's window clerks: sessions, rosters, announcements, the outbox, reminders.

Each command opens the same services as the server (same Redis, same keys) and closes them again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.clock import CHINA, Clock
from bot.composition import Services
from bot.settings import OperatorError
from dialogs.assessment import session_on, sessions_with_moves, weekday
from dialogs.service_roles import CERTIFICATE
from integrations.applications import FINISHED

CATEGORY = {1: "视力", 2: "听力", 3: "言语", 4: "肢体", 5: "智力", 6: "精神", 7: "多重"}
ROSTER_COLUMNS = [
    "序号",
    "姓名",
    "性别",
    "出生日期",
    "身份证号后4位",
    "乡镇/村",
    "联系电话",
    "代办人",
    "受理编号",
    "申请编号",
    "残疾类别（自报）",
    "签到",
]
ROSTER_WIDTHS = [6, 10, 6, 12, 14, 22, 14, 20, 16, 20, 16, 12]
_TOWN_VILLAGE = re.compile(r"([^县市区旗]{1,8}?(?:镇|乡|街道|苏木))([^镇乡]{0,10}?(?:村|社区|嘎查))?")


async def sessions_list(s: Services, count: int = 6) -> str:
    today = s.clock.today()
    capacity = int(s.pack.assessment.get("capacity", 0))
    lines = ["date,scheduled,period,place,booked,capacity"]
    for session in sessions_with_moves(s.pack, s.calendar, today - timedelta(days=1), count, await s.book.moves()):
        booked = len(await s.book.holders(session.key))
        lines.append(f"{session.key},{session.scheduled},{session.period},{session.place},{booked},{capacity}")
    lines.append(f"mental waiting list,,,,{len(await s.book.waitlist('mental'))},")
    return "\n".join(lines) + "\n"


def _town_village(address: str | None) -> str:
    found = _TOWN_VILLAGE.search(address or "")
    return "".join(part for part in found.groups() if part) if found else ""


async def roster_rows(s: Services, day: str) -> list[list[str]]:
    """Who is expected at the session: withdrawn or finished certificates left out (they no longer come)."""
    rows: list[list[str]] = []
    for holder in await s.book.holders(day):
        doc = await s.outbox.get(holder)
        if doc is None:
            rows.append([str(len(rows) + 1), "（未提交）", "", "", "", "", "", "", "", holder, "", ""])
            continue
        statuses = await s.registry.status(holder)
        status = next((statuses[c]["status"] for c in s.pack.with_role(CERTIFICATE) if c in statuses), None)
        if status in FINISHED:
            continue
        meta = await s.registry.meta(holder) or {}
        a, agent = doc["applicant"], doc.get("agent") or {}
        category = CATEGORY.get((doc.get("disability") or {}).get("category", 0), "")  # 0: none given
        rows.append(
            [
                str(len(rows) + 1),
                a["name"],
                {"male": "男", "female": "女"}.get(a["gender"], ""),
                a["birth_date"],
                (a.get("id_number") or "")[-4:],
                _town_village(a.get("household_address")),
                a.get("phone") or agent.get("phone", ""),
                " ".join(p for p in (agent.get("name", ""), agent.get("phone", "")) if p),
                meta.get("application_no") or "",
                doc["id"],
                category,
                "",
            ]
        )
    return rows


def _roster_title(s: Services, day: str) -> str:
    session = session_on(s.pack, s.calendar, date.fromisoformat(day))
    a = s.pack.assessment
    period = session.period if session else a.get("period", "")
    place = session.place if session else a.get("place", "")
    return f"残疾评定名单：{day}{period}，{place}"


def _write_private(path: Path, data: bytes) -> None:
    """Names, birth dates and phones: readable by the operator only (0600), even if the file existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


async def roster(s: Services, day: str, fmt: str, out: Path | None) -> str:
    rows = await roster_rows(s, day)
    title = _roster_title(s, day)
    if fmt == "xlsx":
        from openpyxl import Workbook
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        wb = Workbook()
        ws = wb.active
        ws.title = day
        ws.append([title])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(ROSTER_COLUMNS))
        ws.cell(row=1, column=1).font = Font(bold=True, size=14)
        ws.append(ROSTER_COLUMNS)
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for row in rows:
            ws.append(row)
        for i, width in enumerate(ROSTER_WIDTHS, 1):
            ws.column_dimensions[get_column_letter(i)].width = width
        target = out or Path(f"roster-{day}.xlsx")
        buf = io.BytesIO()
        wb.save(buf)
        _write_private(target, buf.getvalue())
        return f"wrote {len(rows)} rows to {target}\n"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([title])
    writer.writerow(ROSTER_COLUMNS)
    writer.writerows(rows)
    body = "\ufeff" + text.getvalue()  # BOM: Excel opens it as UTF-8, from a file or from stdout
    if out:
        _write_private(out, body.encode("utf-8"))
        return f"wrote {len(rows)} rows to {out}\n"
    return body


async def announce_mental(s: Services, day: str, period: str | None, place: str | None) -> str:
    day = _operator_day(day, "the session's date").isoformat()
    a = s.pack.assessment
    appointment = {
        "session_date": day,
        "period": period or a.get("period", ""),
        "place": place or a.get("place", ""),
        "kind": "mental_session",
    }
    told = 0
    for holder in await s.book.waitlist("mental"):
        await s.book.reserve(f"mental-{day}", holder, 10**6)
        await s.notifier.announce(holder, appointment, kind="mental")
        await s.book.leave_waitlist("mental", holder)
        told += 1
    return f"announced {day} to {told} applicants\n"


def _operator_day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OperatorError(f"{what} must be a real date like 2027-02-11, not {text[:30]!r}") from None


async def move_session(s: Services, day: str, new_day: str) -> str:
    """Move everyone booked on `day` to `new_day`, validated first; journalled (so running it again
    after an interruption finishes it, and `--undo` can put it back)."""
    old_d, new_d = _operator_day(day, "the session's date"), _operator_day(new_day, "the new date")
    today = s.clock.today()
    day, new_day = old_d.isoformat(), new_d.isoformat()
    entry = await s.book.move_of(day)
    if entry is not None and entry["new"] == new_day and not entry["done"]:
        holders = entry["holders"]  # an interrupted move: finish it
    else:
        if new_d == old_d:
            raise OperatorError("the new date is the session's date")
        if new_d < today or old_d < today:
            raise OperatorError(f"{min(old_d, new_d)} is in the past (today is {today})")
        if not s.calendar.is_workday(new_d):
            raise OperatorError(f"{new_day} is not a working day ({weekday(new_d)}, or a public holiday)")
        if new_day in await s.book.moves():
            raise OperatorError(f"{new_day} was moved away from itself; choose another day")
        holders = await s.book.holders(day)
        if not holders:
            raise OperatorError(f"nobody is booked on {day}")
        await s.book.record_move(day, new_day, holders, s.clock.now().isoformat(timespec="seconds"))
        entry = await s.book.move_of(day)
    assert entry is not None
    moved = await _move_holders(s, day, new_day, holders, notice=entry["at"])
    await s.book.finish_move(day)
    # An earlier move onto `day` now ends on `new_day`: that session is held there.
    for earlier, target in (await s.book.moves()).items():
        if target == day and earlier != day:
            prior = await s.book.move_of(earlier)
            if prior is not None:
                await s.book.record_move(earlier, new_day, prior["holders"], prior["at"])
                await s.book.finish_move(earlier)
    return f"moved {moved} bookings from {day} to {new_day}\n"


async def undo_move(s: Services, day: str) -> str:
    """Put back the move away from `day`: whoever it moved and is still booked on the new day."""
    old_d = _operator_day(day, "the session's date")
    day = old_d.isoformat()
    entry = await s.book.move_of(day)
    if entry is None:
        raise OperatorError(f"no move away from {day} is recorded")
    if old_d < s.clock.today():
        raise OperatorError(f"{day} is in the past (today is {s.clock.today()})")
    still = set(await s.book.holders(entry["new"]))
    holders = [h for h in entry["holders"] if h in still]
    moved = await _move_holders(s, entry["new"], day, holders, notice=f"undo-{entry['at']}")
    await s.book.forget_move(day)
    return f"moved {moved} bookings back from {entry['new']} to {day}\n"


async def _move_holders(s: Services, day: str, new_day: str, holders: list[str], *, notice: str) -> int:
    old = session_on(s.pack, s.calendar, date.fromisoformat(day))
    a = s.pack.assessment
    appointment = {
        "session_date": new_day,
        "period": old.period if old else a.get("period", ""),
        "place": old.place if old else a.get("place", ""),
        "kind": "monthly_session",
    }
    moved = 0
    for holder in holders:
        meta = await s.registry.meta(holder)
        if meta is not None and (meta.get("appointment") or {}).get("session_date") != new_day:
            await s.notifier.announce(holder, appointment, kind="moved", old=day, occasion=notice)
        await s.book.transfer(day, new_day, holder)
        moved += 1
    return moved


async def send_due(s: Services) -> str:
    """Queue the reminders due by the services' clock; the serving process sends them to WeChat."""
    queued = await s.reminders.send_due(
        s.clock.time(), s.push, lambda rid, payload: s.notifier.render_reminder(rid, payload, conversations=s.store)
    )
    return json.dumps({"reminders_queued": queued, "push_pending": await s.push.pending()}, ensure_ascii=False) + "\n"


async def push_failed(s: Services) -> str:
    """`bot push failed`: what was given up on, oldest first, one JSON object a line."""
    rows = await s.push.failed()
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows) or "no failed pushes\n"


async def push_resend(s: Services, key: str | None, *, every: bool = False) -> tuple[str, bool]:
    """`bot push resend KEY|--all`: only queues; the serving process sends (at most once, as always)."""
    from bot.settings import ConfigError

    if every == bool(key):
        raise ConfigError("bot push resend needs a key from `bot push failed`, or --all (not both)")
    if every:
        keys = await s.push.resend_all()
        return f"queued again: {len(keys)} messages\n", True
    assert key is not None
    if await s.push.resend(key):
        return f"queued again: {key}\n", True
    return f"not a failed push: {key}\n", False


async def tickets_list(s: Services) -> str:
    """Handoffs waiting for a call back: who, which application, what was asked, the number to call."""
    from integrations.tickets import Tickets

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["ticket", "at", "application", "asked", "applicant", "agent", "callback", "state"])
    for t in await Tickets(s.redis.client, s.sealer, s.outbox).list():
        writer.writerow(
            [t["ticket"], t["at"], t["application_id"], t["asked"], t["applicant"], t["agent"], t["callback"], t["state"]]
        )
    return buf.getvalue()


async def satisfaction_report(s: Services) -> str:
    lines = ["service,1,2,3,4,5,count,average"]
    for code, counts in sorted((await s.feedback.report()).items()):
        n = sum(counts.values())
        avg = sum(k * v for k, v in counts.items()) / n if n else 0
        lines.append(",".join([code, *(str(counts.get(i, 0)) for i in range(1, 6)), str(n), f"{avg:.2f}"]))
    return "\n".join(lines) + "\n"


async def satisfaction_comments(s: Services) -> str:
    """What citizens wrote after their score, per service (sealed in Redis; shown here to operators)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["at", "service", "application", "score", "comment"])
    for c in await s.feedback.comments():
        at = datetime.fromtimestamp(c["at"], CHINA).isoformat(timespec="seconds")
        writer.writerow([at, c["service"], c["app_id"], c.get("score") or "", c["comment"]])
    return buf.getvalue()


async def menu(s: Services, action: str) -> int:
    """`bot menu show|push`: the menu of content/common/menu.yaml, checked against WeChat's limits."""
    import aiohttp

    from bot.composition import wechat_api
    from bot.settings import ConfigError
    from integrations.wechat_api import TokenUnavailable
    from integrations.wechat_menu import menu_payload

    try:
        payload = menu_payload(s.pack.menu)
    except ValueError as e:
        raise ConfigError(f"content/common/menu.yaml: {e}") from None
    if action == "show":
        write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return 0
    if not s.settings.has_wechat_credentials:
        raise ConfigError("bot menu push needs WECHAT_APPID and WECHAT_APPSECRET (the menu goes to WeChat itself)")
    async with aiohttp.ClientSession() as http:
        api = wechat_api(s.settings, http, s.redis.client, clock=s.clock.time)
        try:
            errcode, errmsg = await api.create_menu(payload)
        except TokenUnavailable as e:
            errcode, errmsg = e.errcode, e.detail
    if errcode:
        hint = " (add this server's IP to the account's API IP whitelist)" if errcode == 40164 else ""
        print(f"bot: WeChat refused the menu: errcode {errcode} {errmsg}{hint}", file=sys.stderr)
        return 1
    write(f"menu created: {len(payload['button'])} buttons\n")
    return 0


def calendar_check(s: Services) -> str:
    """The years of the next 120 days without a published holiday schedule, one line each ('' if none)."""
    from dialogs.workdays import calendar_check as missing

    return "".join(line + "\n" for line in missing(s.calendar, s.clock.today()))


def clock_at(value: str) -> Clock:
    """`--now`: the command's clock starts at that moment (China time when no offset)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        from bot.settings import ConfigError

        raise ConfigError(f"--now must be an ISO 8601 time like 2026-12-08T09:00, not {value[:30]!r}") from None
    return Clock.at(when if when.tzinfo else when.replace(tzinfo=CHINA))


def write(text: str) -> None:
    sys.stdout.write(text)
