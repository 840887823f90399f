"""Masking of personal numbers in every log line: ID and certificate numbers, phones.

Installed on the root logger's handlers at start-up (and in tests), so no module can log one in
clear by accident.
"""
from __future__ import annotations

import logging
import re

# 20-char certificate numbers first, then 18-char IDs, 15-digit old IDs, mobiles, landlines.
_PATTERNS = [
    (re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{13}[\dXx](\d{2})(?![0-9A-Za-z])"), r"\1****************\2"),
    (re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[\dXx])(?![0-9A-Za-z])"), r"\1**********\2"),
    (re.compile(r"(?<!\d)(\d{4})\d{8}(\d{3})(?!\d)"), r"\1********\2"),
    (re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d)\d{4}(\d{4})(?!\d)"), r"\1****\2"),
    (re.compile(r"(?<!\d)(0\d{2,3})-?\d{3,4}(\d{4})(?!\d)"), r"\1-****\2"),
]


def mask_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error path
            return True
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def install_masking(logger: logging.Logger | None = None) -> None:
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # transitions logs every state change at INFO: three lines a turn, each through the masking filter.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    install_masking()
