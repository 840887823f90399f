"""The region's paper application form, prefilled from the application, as a PDF to sign.

Laid out like the annex; labels from content/<region>/application_form.yaml, whose `layout` says
which: 青阳's 《扶残助困一件事申请表》 (附件2: applicant, services ticked, declaration, signature,
remarks) or 内蒙古's 《残疾人两项补贴申请审批表》 (附件4: a grid with the guardian, the reasons, the
signature and 捺印, and empty review boxes). The font is ReportLab's built-in Adobe CID font
STSong-Light: the PDF viewer supplies the glyphs, so nothing is shipped or installed.
"""

from __future__ import annotations

import io
import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from dialogs.pack import CONTENT_DIR

FONT = "STSong-Light"
GENDER = {"male": "男", "female": "女"}


class NoForm(LookupError):
    """The region's pack has no printable application form."""


@cache
def form_of(region: str) -> dict[str, Any]:
    path = CONTENT_DIR / region / "application_form.yaml"
    if not Path(path).exists():
        raise NoForm(region)
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def _font() -> str:
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def application_form_pdf(document: dict[str, Any], relations: dict[str, str] | None = None) -> bytes:
    """`relations`: the pack's words for an agent's relation (child -> 子女)."""
    form = form_of(document["region"])
    if form.get("layout") == "approval_table":
        return _approval_table(form, document, relations or {})
    font = _font()
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(form["title"])
    width, height = A4
    left, right = 56.0, width - 56.0
    a = document.get("applicant") or {}

    pdf.setFont(font, 20)
    pdf.drawCentredString(width / 2, height - 80, form["title"])
    pdf.setFont(font, 11)
    office = (document.get("routing") or {}).get("intake_office") or ""
    pdf.drawString(left, height - 112, f"{form['office_label']}：{office or form['office_options']}")
    pdf.drawRightString(right, height - 112, f"申请编号：{document['id']}")

    top = height - 124
    rows: list[tuple[float, Any]] = []  # (row height, painter)
    label_w = 60.0

    def applicant_row(y: float, h: float) -> None:
        f = form["fields"]
        pdf.setFont(font, 11)
        x = left + label_w + 8
        pdf.drawString(x, y - 22, f"{f['name']}：{a.get('name') or ''}")
        pdf.drawString(x + 150, y - 22, f"{f['gender']}：{GENDER.get(a.get('gender') or '', '')}")
        pdf.drawString(x, y - 46, f"{f['id_number']}：{a.get('id_number') or ''}")
        pdf.drawString(x + 230, y - 46, f"{f['phone']}：{a.get('phone') or ''}")
        pdf.drawString(x, y - 70, f"{f['household_address']}：{a.get('household_address') or ''}")
        _label(pdf, font, form["section_applicant"], left, y, label_w, h)

    def services_row(y: float, h: float) -> None:
        chosen = set(document.get("services") or [])
        x = left + label_w + 8
        pdf.setFont(font, 11)
        pdf.drawString(x, y - 20, f"{form['section_services']}：")
        line = y - 44
        for code, label in form["services"].items():
            _box(pdf, x, line, code in chosen)
            text = label
            if code == form.get("appointment_on"):
                text += f"（{form['appointment_label']}：{_appointment(document.get('appointment'))}）"
            pdf.setFont(font, 11)
            pdf.drawString(x + 16, line, text)
            line -= 24
        _label(pdf, font, "申请事项", left, y, label_w, h)

    def declaration_row(y: float, h: float) -> None:
        text = (document.get("declaration") or {}).get("text") or ""
        pdf.setFont(font, 11)
        line = y - 22
        for chunk in _wrap(text, 38):
            pdf.drawString(left + 8, line, chunk)
            line -= 18
        pdf.drawString(left + 250, y - h + 46, f"{form['signature']}：")
        pdf.drawString(left + 330, y - h + 20, form["date_line"])

    def remarks_row(y: float, h: float) -> None:
        _label(pdf, font, form["remarks"], left, y, label_w, h)

    rows = [
        (86.0, applicant_row),
        (44.0 + 24 * len(form["services"]), services_row),
        (150.0, declaration_row),
        (70.0, remarks_row),
    ]
    y = top
    pdf.setLineWidth(0.8)
    for h, paint in rows:
        pdf.rect(left, y - h, right - left, h)
        paint(y, h)
        y -= h
    pdf.setFont(font, 8)
    pdf.drawString(left, y - 16, form["basis"])
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def _label(pdf: canvas.Canvas, font: str, text: str, left: float, y: float, w: float, h: float) -> None:
    """A label cell on the left of a row, written top to bottom as on the annex."""
    pdf.line(left + w, y, left + w, y - h)
    pdf.setFont(font, 11)
    step = min(16.0, (h - 12) / max(len(text), 1))
    start = y - (h - step * len(text)) / 2 - 11
    for i, ch in enumerate(text):
        pdf.drawCentredString(left + w / 2, start - i * step, ch)


def _box(pdf: canvas.Canvas, x: float, y: float, ticked: bool) -> None:
    pdf.rect(x, y - 2, 11, 11)
    if ticked:
        pdf.drawString(x + 1, y, "√")


def _appointment(appointment: dict[str, Any] | None) -> str:
    if not appointment or not appointment.get("session_date"):
        return "    年    月    日  上午/下午"
    day = date.fromisoformat(appointment["session_date"])
    return f"{day.year}年{day.month}月{day.day}日{appointment.get('period') or ''}"


def _wrap(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


# -- 附件4: a grid ---------------------------------------------------------------------------------
TICK, EMPTY = "■", "□"


def _ticks(options: dict[Any, str], chosen: set[Any]) -> str:
    return "  ".join(f"{TICK if key in chosen else EMPTY}{label}" for key, label in options.items())


def _approval_table(form: dict[str, Any], document: dict[str, Any], relations: dict[str, str]) -> bytes:
    font = _font()
    labels = form["labels"]
    a = document.get("applicant") or {}
    agent = document.get("agent") or {}
    disability = document.get("disability") or {}
    hardship = document.get("hardship") or {}
    reasons = hardship.get("subsidy_reasons") or {}
    statuses = set(hardship.get("statuses") or [])
    dibao = {name for name, codes in form["dibao"].items() if statuses & set(codes)}
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(form["title"])
    width, height = A4
    left, right = 40.0, width - 40.0
    span = right - left
    pdf.setFont(font, 18)
    pdf.drawCentredString(width / 2, height - 60, form["title"])
    pdf.setFont(font, 10)
    place = (document.get("routing") or {}).get("application_place") or ""
    pdf.drawString(left, height - 86, f"{form['place_label']}：{place}")
    pdf.drawString(left + span / 2, height - 86, f"{form['date_label']}：{_day(document.get('submitted_at'))}")
    pdf.drawRightString(right, height - 86, f"申请编号：{document['id']}")

    photo_w = 70.0
    body = span - photo_w
    # Each row: its height and its cells as (text, width as a share of the row, is a label).
    rows: list[tuple[float, list[tuple[str, float, bool]]]] = [
        (
            26,
            [
                (labels["name"], 0.16, True),
                (a.get("name") or "", 0.2, False),
                (labels["gender"], 0.1, True),
                (GENDER.get(a.get("gender") or "", ""), 0.1, False),
                (labels["phone"], 0.14, True),
                (a.get("phone") or "", 0.3, False),
            ],
        ),
        (
            26,
            [
                (labels["id_number"], 0.16, True),
                (a.get("id_number") or "", 0.4, False),
                (labels["dibao"], 0.14, True),
                (_ticks({k: k for k in form["dibao"]}, dibao), 0.3, False),
            ],
        ),
        (26, [(labels["certificate_no"], 0.16, True), (disability.get("certificate_no") or "", 0.84, False)]),
        (26, [(labels["household"], 0.16, True), (a.get("household_address") or "", 0.84, False)]),
    ]
    top = height - 96
    y = top
    pdf.setLineWidth(0.8)
    for h, cells in rows:
        _cells(pdf, font, left, y, body, h, cells)
        y -= h
    pdf.rect(right - photo_w, y, photo_w, top - y)
    pdf.setFont(font, 10)
    pdf.drawCentredString(right - photo_w / 2, (top + y) / 2, labels["photo"])
    levels = {int(k): v for k, v in form["levels"].items()}
    categories = {int(k): v for k, v in form["categories"].items()}
    chosen_subsidies = set(document.get("services") or [])
    full = [
        (
            44,
            [
                (labels["level"], 0.12, True),
                (_ticks(levels, {disability.get("level")}), 0.3, False),
                (labels["category"], 0.12, True),
                (_ticks(categories, {disability.get("category")}), 0.46, False),
            ],
        ),
        (26, [(labels["subsidies"], 0.16, True), (_ticks(form["subsidies"], chosen_subsidies), 0.84, False)]),
        (22, [(labels["guardian"], 1.0, True)]),
        (
            26,
            [
                (labels["guardian_name"], 0.12, True),
                (agent.get("name") or "", 0.2, False),
                (labels["guardian_gender"], 0.1, True),
                (GENDER.get(agent.get("gender") or "", ""), 0.1, False),
                (labels["relation"], 0.16, True),
                (relations.get(agent.get("relation") or "", ""), 0.32, False),
            ],
        ),
        (
            26,
            [
                (labels["guardian_id"], 0.12, True),
                (agent.get("id_number") or "", 0.44, False),
                (labels["guardian_phone"], 0.12, True),
                (agent.get("phone") or "", 0.32, False),
            ],
        ),
        (26, [(labels["residence"], 0.12, True), (agent.get("residence") or "", 0.88, False)]),
        (
            90,
            [
                (f"{labels['living_reason']}：{reasons.get('living_subsidy', '')}", 0.5, False),
                (f"{labels['nursing_reason']}：{reasons.get('nursing_subsidy', '')}", 0.5, False),
            ],
        ),
        (40, [(f"{labels['signature']}：", 0.5, False), (f"{labels['signature']}：", 0.5, False)]),
        (
            90,
            [
                (labels["township_review"], 0.14, True),
                (f"\n\n\n{labels['review_sign']}", 0.36, False),
                (labels["federation_review"], 0.14, True),
                (f"\n\n\n{labels['review_sign']}", 0.36, False),
            ],
        ),
        (80, [(labels["bureau_review"], 0.14, True), (f"\n\n\n{labels['review_sign']}", 0.86, False)]),
    ]
    for h, cells in full:
        _cells(pdf, font, left, y, span, h, cells)
        y -= h
    pdf.setFont(font, 8)
    pdf.drawString(left, y - 14, form["note"])
    pdf.drawString(left, y - 28, form["basis"])
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def _cells(
    pdf: canvas.Canvas, font: str, x: float, y: float, width: float, h: float, cells: list[tuple[str, float, bool]]
) -> None:
    for text, share, is_label in cells:
        w = width * share
        pdf.rect(x, y - h, w, h)
        size = 9 if is_label else 10
        pdf.setFont(font, size)
        lines = [line for part in text.split("\n") for line in _fit(part, font, size, w - 8)]
        line_h = size + 3
        # A label is centred in its cell; a value starts at the top (a reason may run to several lines).
        start = y - (h - line_h * len(lines)) / 2 - size + 1 if is_label else y - size - 6
        for i, line in enumerate(lines):
            if is_label:
                pdf.drawCentredString(x + w / 2, start - i * line_h, line)
            else:
                pdf.drawString(x + 4, start - i * line_h, line)
        x += w


def _fit(text: str, font: str, size: float, width: float) -> list[str]:
    """Lines of `text` no wider than `width`, broken between the options of a tick list ("  ") where
    they fit, else between characters."""
    if not text:
        return [""]
    lines: list[str] = []
    line = ""
    for word in re.split(r"(?<=  )", text):
        candidate = line + word
        if pdfmetrics.stringWidth(candidate.rstrip(), font, size) <= width:
            line = candidate
            continue
        if line:
            lines.append(line.rstrip())
            line = ""
        for ch in word:
            if pdfmetrics.stringWidth(line + ch, font, size) > width and line:
                lines.append(line.rstrip())
                line = ""
            line += ch
    lines.append(line.rstrip())
    return lines


def _day(iso: str | None) -> str:
    if not iso:
        return ""
    day = date.fromisoformat(iso[:10])
    return f"{day.year}年{day.month}月{day.day}日"
