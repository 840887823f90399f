"""The region's paper application form, prefilled from the application, as a PDF to sign.

Laid out like the annex (a bordered table: applicant, services ticked, declaration, signature,
remarks); labels from content/<region>/application_form.yaml. The font is ReportLab's built-in
Adobe CID font STSong-Light: the PDF viewer supplies the glyphs, so nothing is shipped or installed.
"""

from __future__ import annotations

import io
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


def application_form_pdf(document: dict[str, Any]) -> bytes:
    form = form_of(document["region"])
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
            if code == "disability_certificate":
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
