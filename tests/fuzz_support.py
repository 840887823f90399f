"""Shared pieces of the fuzz suite (tests/test_fuzz_*.py): settings profiles, case counts, strategies.

Profiles: "ci" (default) keeps the whole fuzz suite within about a minute on two cores; "long"
(HYPOTHESIS_PROFILE=long) runs ten times as many cases. They are applied per test through
`fuzz(weight)`, never loaded globally, so other hypothesis tests keep their own settings.

Every property calls `count()` once per case it runs; `summary()` (called from the
pytest_terminal_summary hook in conftest.py) prints how many ran, per property, with the time.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    # One app and one Redis per test, shared by its cases: that is the point, not an accident.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=1000)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    PROFILE = "ci"

CASES: Counter[str] = Counter()


def fuzz(weight: float = 1.0) -> settings:
    """The settings of one property: `weight` times the profile's number of cases."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(1, round(base.max_examples * weight)))


def count() -> None:
    """One more case of the property now running (keyed by its pytest node id)."""
    CASES[os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]] += 1


def summary(terminalreporter) -> None:
    if not CASES:
        return
    durations = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) == "call":
                durations[report.nodeid] = report.duration
    tr = terminalreporter
    tr.write_sep("=", f"fuzz cases run (hypothesis profile {PROFILE})")
    for nodeid, n in sorted(CASES.items()):
        tr.write_line(f"{n:7d} {durations.get(nodeid, 0):7.1f}s  {nodeid}")
    tr.write_line(f"{sum(CASES.values()):7d} {sum(durations.get(k, 0) for k in CASES):7.1f}s  total")


# -- strategies ------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\u3000",
    "]]>",
    "<![CDATA[x]]>",
    "<xml>",
    "&amp;",
    "&#0;",
    "&lol;",
    "\u202e",
    "\u202eabc\u202c",
    "\u200f",
    "\ufeff",
    "\u200b",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r\n",
    "\ufffd",
    "\uffff",
    "😀",
    "👨‍👩‍👧‍👦",
    "🇨🇳",
    "{",
    "}",
    "{0}",
    "{reference}",
    "%s%n",
    "\\",
    "'\"",
    "null",
    "NaN",
    "-1",
    "0",
    "1",
    "9" * 30,
    "١٢٣",
    "１２３",
    "①",
    "Ⅻ",
    "幺三八",
    "叉",
    "X" * 18,
    "𠀀𪚥",
    "ا",
    "\u0301" * 20,
    "A\u030a",
    "Ⓐ",
    "ﬁ",
    "㍻",
]


def _xml_bytes(text: str) -> int:
    """Bytes of `text` in a CDATA section (where "]]>" is split in two)."""
    return len(text.replace("]]>", "]]]]><![CDATA[>").encode())


# Surrogates cannot be sent as UTF-8; everything else (controls, format, private use...) can.
characters = st.characters(exclude_categories=("Cs",))
nasty_text = st.one_of(
    st.text(characters, max_size=40),
    st.lists(st.sampled_from(NASTY), max_size=6).map("".join),
    # Very long, but inside the 64 kB body limit once in XML and encrypted: it must reach the dialog.
    st.tuples(st.sampled_from(NASTY[1:]), st.integers(500, 8000)).map(lambda t: t[0] * min(t[1], 30_000 // _xml_bytes(t[0]))),
    st.text(st.sampled_from("零一二三四五六七八九幺两叉Xx0123456789０１２ -—·.。/()"), max_size=30),
)


def leaves(value, path: str = "") -> dict[str, object]:
    """A nested dict as {dotted path: value}; lists are single values."""
    if not isinstance(value, dict):
        return {path: value}
    out: dict[str, object] = {}
    for key, inner in value.items():
        out.update(leaves(inner, f"{path}.{key}" if path else key))
    return out


def traceback_free(text: str) -> bool:
    return not re.search(r"Traceback|File \"|Error:|Exception", text)
