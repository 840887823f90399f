"""Understanding free text, typed or spoken: numbers, option words, services, commands, topics.

The vocabulary is content (content/common/lexicon.yaml and the options in questions.yaml); this
module only holds the mechanism: jieba with that vocabulary as a domain dictionary, then matching
whole words, longest first.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jieba

from dialogs.application import At
from dialogs.pack import Pack
from dialogs.service_roles import GROUP_WORDS

NO_MATCH = object()

_PUNCT = re.compile(r"[\s。，,.!！?？、；;：:~～…\"'“”‘’（）()\[\]【】<>《》]+")
_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "十": 10,
    "衣": 1,  # speech recognition's "一" (yī)
}
_NUMBER_ANSWER = re.compile(r"^(?:第|选|选择|回复)?([0-9]{1,2}|[零〇一幺衣二两三四五六七八九十])(?:个|项|号|条)?$")
# What is read of a message: a 64 KB text once blocked the event loop for ~3 s in jieba. Free-text
# fields keep the whole message (up to their own limit): only understanding stops here.
MAX_UNDERSTOOD_CHARS = 500
# Short messages come again and again ("1", "是的", "同上"): those are cut once and kept.
MAX_CACHED_CHARS = 64
# The answers people repeat are few: a bigger cache mostly keeps one-off names, ID numbers and phones
# in memory (three caches of 8192 took many minutes of traffic to fill).
CACHED_MESSAGES = 1024
# Particles people end a yes or no with ("好的呀", "不要了").
_TRAILING_PARTICLES = "啊呀吧呢哈啦嘛哦噢喔了的"

_tokenizers: dict[frozenset[str], jieba.Tokenizer] = {}


def domain_tokenizer(words: Iterable[str]) -> jieba.Tokenizer:
    """A jieba tokenizer whose dictionary is our domain vocabulary (content/common/lexicon.yaml).

    jieba's general dictionary takes about 1.5 s to load and adds nothing to finding our words:
    with only the domain words (and jieba's HMM for the rest) the bot answers within 2 s of start.
    Built once per vocabulary and process.
    """
    vocabulary = frozenset(w.strip().lower() for w in words if w.strip() and " " not in w.strip())
    tokenizer = _tokenizers.get(vocabulary)
    if tokenizer is None:
        jieba.setLogLevel(60)
        folder = Path(tempfile.gettempdir()) / "fucan-bot-jieba"
        folder.mkdir(exist_ok=True)
        digest = hashlib.sha256("\n".join(sorted(vocabulary)).encode()).hexdigest()[:16]
        dictionary = folder / f"domain-{digest}.txt"
        if not dictionary.exists():
            tmp = folder / f".{digest}.{os.getpid()}"
            tmp.write_text("".join(f"{w} {1000 + 100 * len(w)}\n" for w in sorted(vocabulary)), encoding="utf-8")
            tmp.replace(dictionary)
        tokenizer = jieba.Tokenizer(dictionary=str(dictionary))
        tokenizer.tmp_dir = str(folder)
        tokenizer.initialize()
        _tokenizers[vocabulary] = tokenizer
    return tokenizer


def clean(text: str) -> str:
    """NFKC (full-width to ASCII) and drop punctuation, as voice recognition adds it freely."""
    return _PUNCT.sub(" ", unicodedata.normalize("NFKC", text or "")).strip()


def compact(text: str) -> str:
    """The message as matched: at most MAX_UNDERSTOOD_CHARS, cleaned, without spaces, lower case."""
    text = (text or "")[:MAX_UNDERSTOOD_CHARS]
    # A turn asks this of the same short message many times; long texts are not worth keeping.
    return _compact_short(text) if len(text) <= MAX_CACHED_CHARS else _compact(text)


def _compact(text: str) -> str:
    return clean(text).replace(" ", "").lower()


_compact_short = functools.lru_cache(maxsize=CACHED_MESSAGES)(_compact)


def _lowered(groups: dict[str, Iterable[str]]) -> dict[str, list[str]]:
    return {name: [w.lower() for w in words] for name, words in groups.items()}


class Understanding:
    def __init__(self, pack: Pack):
        lex = pack.lexicon
        # Matching is on lower-cased text, so the vocabulary is lower-cased once, here.
        self.services = _lowered(lex["services"])
        self.service_order = pack.service_order
        # A group word ("两项补贴") stands for every service of its role; a word for a service this
        # pack does not offer stands for nothing.
        self._stands_for = {
            code: pack.with_role(GROUP_WORDS[code]) if code in GROUP_WORDS else (code,) if code in pack.services else ()
            for code in self.services
        }
        self.commands = _lowered(lex["commands"])
        self._command_named: dict[str, str] = {}
        for name, synonyms in self.commands.items():
            for w in synonyms:
                self._command_named.setdefault(w, name)
        self.topics = _lowered(lex["topics"])
        self.edit_words = [w.lower() for w in lex["edit_words"]]
        self.edit_targets = _lowered(lex["edit_targets"])
        self.yes_words = set(lex["yes_words"])
        self.no_words = set(lex["no_words"])
        # What a fragment that names no service but looks like one contains (补贴, 救助 ...).
        self.service_hint = "|".join(re.escape(w) for w in lex.get("service_hints", []) or ["补贴"])
        # Voice slips ("生活不贴", "一及"): each replaced by what was meant before matching.
        self.slips = [(a.lower(), b.lower()) for a, b in (lex.get("voice_slips") or {}).items()]
        vocabulary = {
            w for group in (self.services, self.commands, self.topics, self.edit_targets) for ws in group.values() for w in ws
        }
        vocabulary |= set(self.edit_words) | self.yes_words | self.no_words
        for q in pack.questions.values():
            for key in ("same_words", "all_words", "unsure_words", "continue_words"):
                vocabulary.update(q.get(key, []))
            for option in [*(q.get("options", []) or []), *(q.get("unnumbered", []) or [])]:
                vocabulary.update(option.get("words", []))
                vocabulary.add(option["label"])
        self.tokenizer = domain_tokenizer(vocabulary)
        # Citizens send the same short answers again and again ("1", "是的", "同上"): cut each once,
        # and (a turn asks it of one message several times) normalise each once.
        self._cut_short = functools.lru_cache(maxsize=CACHED_MESSAGES)(self._lcut)
        self._normal_short = functools.lru_cache(maxsize=CACHED_MESSAGES)(self._normal)
        self._command_words = {name: frozenset(ws) for name, ws in self.commands.items() if name != "greet"}

    def _lcut(self, text: str) -> tuple[str, ...]:
        return tuple(w for w in self.tokenizer.lcut(text) if w.strip())

    # -- words ---------------------------------------------------------------------------------
    def normal(self, text: str) -> str:
        """The message as matched (compact), with voice slips replaced by what was meant."""
        return self._normal_short(text) if len(text or "") <= MAX_CACHED_CHARS else self._normal(text)

    def _normal(self, text: str) -> str:
        text_c = compact(text)
        for slip, meant in self.slips:
            if slip in text_c:
                text_c = text_c.replace(slip, meant)
        return text_c

    def words(self, text: str) -> tuple[str, ...]:
        text_c = self.normal(text)
        # Only short texts are kept: a long one is rarely sent twice, and jieba's words for it are big.
        return self._cut_short(text_c) if len(text_c) <= MAX_CACHED_CHARS else self._lcut(text_c)

    def _hits(self, text: str, words: tuple[str, ...], vocab: Iterable[str]) -> list[str]:
        """Vocabulary entries found in the text: as a jieba word, or (for 2+ characters) inside it."""
        text_c = self.normal(text)
        found = []
        for w in vocab:
            wl = w.lower()
            if wl in words or (len(wl) >= 2 and wl in text_c):
                found.append(w)
        return found

    # -- answers to a question ----------------------------------------------------------------
    @staticmethod
    def number(text: str) -> int | None:
        m = _NUMBER_ANSWER.match(compact(text))
        if not m:
            return None
        token = m.group(1)
        return int(token) if token.isdigit() else _CN_DIGITS[token]

    @staticmethod
    def numbers(text: str) -> list[int]:
        """All option numbers in an answer like "1 3 5", "1、3、5" or "一三五"."""
        t = unicodedata.normalize("NFKC", text or "")
        found = [int(d) for d in re.findall(r"\d", t)]
        if not found:
            found = [_CN_DIGITS[c] for c in t if c in _CN_DIGITS and _CN_DIGITS[c] < 10]
        return found

    def choose(self, text: str, options: list[dict[str, Any]], *, single_characters: bool = True) -> Any:
        """The value of the option meant by the answer (a number, a label or one of its words), or
        for a plain yes or no ("好的", "不行") the one option that is said with a yes (or no) word.
        `single_characters=False`: a one-character word ("在", "有") does not decide a sentence."""
        n = self.number(text)
        if n is not None:
            return options[n - 1]["value"] if 1 <= n <= len(options) else NO_MATCH
        text_c = self.normal(text)
        if not text_c:
            return NO_MATCH
        polar = self._polar_option(text_c, options)
        if polar is not NO_MATCH:  # before words inside it: "不是的" holds "是的"
            return polar
        words = self.words(text)
        best, best_len = NO_MATCH, 0
        for option in options:
            for w in [option["label"], *option.get("words", [])]:
                wl = w.lower()
                exact = text_c == wl
                if len(wl) < 2 and not (exact or single_characters):
                    continue
                if exact or wl in words or (len(wl) >= 2 and wl in text_c):
                    score = len(wl) + (100 if exact else 0)
                    if score > best_len:
                        best, best_len = option["value"], score
        return best

    def polarity(self, text: str) -> bool | None:
        """True for a plain yes ("好的", "没问题呀"), False for a plain no ("不行", "不要了"), else None."""
        text_c = self.normal(text)
        for t in dict.fromkeys((text_c, text_c.rstrip(_TRAILING_PARTICLES), text_c.lstrip("嗯").rstrip(_TRAILING_PARTICLES))):
            if t in self.no_words:
                return False
            if t in self.yes_words:
                return True
        return None

    def _polar_option(self, text_c: str, options: list[dict[str, Any]]) -> Any:
        said = self.polarity(text_c)
        if said is None:
            return NO_MATCH
        vocabulary = self.yes_words if said else self.no_words
        meant = [o["value"] for o in options if vocabulary & {w.lower() for w in [o["label"], *o.get("words", [])]}]
        return meant[0] if len(meant) == 1 else NO_MATCH

    def choose_many(
        self, text: str, options: list[dict[str, Any]], exclusive: Any = None, unnumbered: Sequence[dict[str, Any]] = ()
    ) -> list[Any] | Any:
        """Every option meant by an answer that may name several ("1 5", "低保和脱贫户都是").

        A word inside a longer matched word does not count twice ("农村低保" is not also "低保").
        `exclusive` (e.g. "都不是") stands only alone. NO_MATCH when nothing is understood.
        """
        t = unicodedata.normalize("NFKC", text or "")
        if re.fullmatch(r"[\s\d,，、和及与.。;；/+第个项都是]+", t) and re.search(r"\d", t):
            numbers = sorted(set(self.numbers(t)))
            if not numbers or any(not 1 <= n <= len(options) for n in numbers):
                return NO_MATCH
            values = [options[n - 1]["value"] for n in numbers]
        else:
            text_c = self.normal(text)
            if not text_c:
                return NO_MATCH
            hits: list[tuple[int, int, Any]] = []  # (start, end, value) of each word found
            for option in [*options, *unnumbered]:
                for w in [option["label"], *option.get("words", [])]:
                    wl = w.lower()
                    if wl == text_c or len(wl) >= 2:
                        hits += [(m.start(), m.start() + len(wl), option["value"]) for m in re.finditer(re.escape(wl), text_c)]
            # Longest first; a word overlapping a longer one found there does not count ("城镇低保户" is
            # 城镇低保, not also 低保户).
            taken: list[tuple[int, int, Any]] = []
            for start, end, value in sorted(hits, key=lambda h: (h[0] - h[1], h[0])):
                if all(end <= s or start >= e for s, e, _ in taken):
                    taken.append((start, end, value))
            found = {v for _, _, v in taken}
            values = [o["value"] for o in [*options, *unnumbered] if o["value"] in found]
            values = list(dict.fromkeys(values))
            if not values:
                single = self.choose(text, options)
                return NO_MATCH if single is NO_MATCH else [single]
        if exclusive in values and len(values) > 1:
            values = [v for v in values if v != exclusive]
        return values

    def is_yes(self, text: str) -> bool:
        return self.polarity(text) is True

    def matches_any(self, text: str, words: list[str]) -> bool:
        return bool(self._hits(text, self.words(text), words))

    # -- services, commands, topics -------------------------------------------------------------
    def services_in(self, text: str) -> list[str]:
        words = self.words(text)
        chosen: set[str] = set()
        for code, synonyms in self.services.items():
            if self._hits(text, words, synonyms):
                chosen.update(self._stands_for[code])
        return [c for c in self.service_order if c in chosen]

    def service_mentions(self, text: str) -> list[tuple[int, int, str]]:
        """Where the message names a service: (start, end, code) in the message as sent (NFKC), in order.

        For splitting one message by service ("生活补贴：…；护理补贴：…"). Slips of the same length are
        replaced first, so positions stay those of the message."""
        t = unicodedata.normalize("NFKC", text or "")[:MAX_UNDERSTOOD_CHARS].lower()
        for slip, meant in self.slips:
            if len(slip) == len(meant):
                t = t.replace(slip, meant)
        hits = [
            (m.start(), m.end(), code)
            for code, synonyms in self.services.items()
            if code != "both_subsidies"
            for w in synonyms
            if len(w) >= 2
            for m in re.finditer(re.escape(w), t)
        ]
        taken: list[tuple[int, int, str]] = []
        for start, end, code in sorted(hits, key=lambda h: (h[0] - h[1], h[0])):
            if all(end <= s or start >= e for s, e, _ in taken):
                taken.append((start, end, code))
        return sorted(taken)

    def unread_service_words(self, text: str) -> list[str]:
        """Parts of a list of services that look like a service but name none ("护理贴" in
        "护理贴和生活补贴"): said back as not understood, never dropped silently."""
        t = self.normal(text)
        for w in sorted((w for ws in self.services.values() for w in ws), key=len, reverse=True):
            t = t.replace(w, " ")
        parts = [p for p in re.split(r"[\s和跟与及还有以及、,，;；也都要办想我申请请帮给再]+", t) if p]
        return [p for p in parts if re.search(self.service_hint, p)]

    def command(self, text: str) -> str | None:
        """A global command, when the message is that command and little else."""
        text_c = self.normal(text)
        if not text_c or len(text_c) > 8:
            return None
        if text_c in self._command_named:
            return self._command_named[text_c]
        if len(text_c) > 6:
            return None
        words = self.words(text)
        for name, synonyms in self._command_words.items():
            if not synonyms.isdisjoint(words):
                return name
        return None

    def topic(self, text: str) -> tuple[str, list[str]] | None:
        """A policy question ("护理补贴要带什么"): its topic and the services it names."""
        text_c = self.normal(text)
        if len(text_c) < 3:
            return None
        words = self.words(text)
        for name, synonyms in self.topics.items():
            if self._hits(text, words, synonyms):
                services = self.services_in(text)
                if services or re.search(r"[吗呢么啥什哪几多]", text_c):
                    return name, services
        return None

    def edit_target(self, text: str) -> str | None:
        words = self.words(text)
        if not self._hits(text, words, self.edit_words):
            return None
        best, best_len = None, 0
        for state, synonyms in self.edit_targets.items():
            for w in self._hits(text, words, synonyms):
                if len(w) > best_len:
                    best, best_len = state, len(w)
        if best is None and self.services_in(text):
            return At.choose_services  # "再加一个生活补贴", "残疾证不用办"
        return best
