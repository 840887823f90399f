"""The policy pack of a region: content/<region>/pack.yaml plus the shared wording in content/common.

Loaded once at start-up into plain, read-only objects. A new county is a new folder under
content/, never new code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dialogs.service_roles import ROLES

# libyaml's C loader when present (10x faster start-up), else the pure-Python safe loader.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CONTENT_DIR = Path(__file__).resolve().parent.parent / "content"

DATED_KEYS = ("workdays", "months")


def value_on(value: Any, day: date | None) -> Any:
    """A policy value that may be dated, OpenFisca-style: `{2023-02-15: 10, 2025-01-01: 8}` is 10 from
    2023-02-15 and 8 from 2025-01-01 (history is append-only: a changed value gets a new date). A plain
    value is valid from the pack's `valid_from`. None before the first date. Without a day: the latest."""
    if not isinstance(value, dict):
        return value
    dated = sorted((date.fromisoformat(str(k)), v) for k, v in value.items())
    if day is None:
        return dated[-1][1]
    valid = [v for since, v in dated if since <= day]
    return valid[-1] if valid else None


def _undated(deadline: dict[str, Any]) -> dict[str, Any]:
    """The deadline with each dated value at its latest entry (what readers without a date see)."""
    return {k: value_on(v, None) if k in DATED_KEYS else v for k, v in deadline.items()}


@dataclass(frozen=True)
class Rule:
    id: str
    check: str
    reason: str
    basis: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    short: str
    department: str
    basis: str
    conditions_text: str
    conditions_basis: str
    rules: tuple[Rule, ...]
    deadline: dict[str, Any]
    result: str
    result_basis: str
    materials: tuple[str, ...]
    raw: dict[str, Any]
    roles: tuple[str, ...] = ()

    def deadline_on(self, day: date) -> dict[str, Any]:
        """The deadline in force on `day`: dated values (`workdays: {2023-02-15: 10}`) resolved."""
        resolved = {}
        for k, v in self.raw.get("deadline", {}).items():
            if k in DATED_KEYS:
                v = value_on(v, day)
                if v is None:
                    continue
            resolved[k] = v
        return resolved


@dataclass(frozen=True)
class Material:
    code: str
    name: str
    basis: str
    when: str | None = None
    note: str | None = None
    covered_by: tuple[str, ...] = ()


@dataclass
class Pack:
    region: str
    name: str
    raw: dict[str, Any]
    services: dict[str, Service]
    materials: dict[str, Material]
    questions: dict[str, dict[str, Any]]
    messages: dict[str, str]
    lexicon: dict[str, Any]
    validation: dict[str, str]
    status: dict[str, Any]
    menu: list[dict[str, str]] = field(default_factory=list)
    notices: dict[str, Any] = field(default_factory=dict)  # content/common/notices.yaml

    @cached_property
    def service_order(self) -> tuple[str, ...]:
        """The services' codes in the order the pack offers them (the menu numbers 1, 2, …)."""
        return tuple(self.services)

    def with_role(self, role: str) -> tuple[str, ...]:
        """The services that play this role (dialogs/service_roles.py), in the pack's order."""
        return tuple(code for code, service in self.services.items() if role in service.roles)

    @property
    def window(self) -> str:
        return self.raw["window"]

    @property
    def assessment(self) -> dict[str, Any]:
        return self.raw.get("assessment", {})

    @property
    def form(self) -> dict[str, Any]:
        return self.raw.get("form", {})

    @property
    def conversation_days(self) -> int:
        return int(self.raw.get("retention", {}).get("conversation_days", 30))

    @property
    def application_days(self) -> int:
        """How long a submitted application is kept after its final result (retention.application_days)."""
        return int(self.raw.get("retention", {}).get("application_days", 180))

    @cached_property
    def placeholders(self) -> dict[str, str]:
        """Values any wording may use: {name}, {window}, {place}, {time}."""
        a = self.assessment
        return {
            "name": self.name,
            "window": self.window,
            "place": a.get("place", ""),
            "time": a.get("time_text", a.get("text", "")),
            "mental_text": a.get("mental", {}).get("text", ""),
            "help_line": self.raw.get("help_line", {}).get("text", ""),
        }

    def text(self, key: str, **values: Any) -> str:
        """A message from messages.yaml, filled in."""
        return self.messages[key].format(**{**self.placeholders, **values})

    def q(self, state: str, key: str = "prompt", **values: Any) -> str:
        """A question's wording from questions.yaml, filled in."""
        return self.questions[state][key].format(**{**self.placeholders, **values})


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_YAML_LOADER) or {}


def available_regions(content_dir: Path = CONTENT_DIR) -> list[str]:
    return sorted(p.parent.name for p in content_dir.glob("*/pack.yaml"))


def load_pack(region: str, content_dir: Path = CONTENT_DIR) -> Pack:
    region_dir = content_dir / region
    raw = _read(region_dir / "pack.yaml")
    if not raw:
        raise ValueError(f"no policy pack for region {region!r} (have: {', '.join(available_regions(content_dir))})")
    common = content_dir / "common"
    questions = _read(common / "questions.yaml") | _read(region_dir / "questions.yaml")
    messages = _read(common / "messages.yaml") | _read(region_dir / "messages.yaml")
    lexicon = _read(common / "lexicon.yaml") | _read(region_dir / "lexicon.yaml")
    validation = _read(common / "validation.yaml") | _read(region_dir / "validation.yaml")
    status = _read(common / "status.yaml") | _read(region_dir / "status.yaml")
    notices = _read(common / "notices.yaml") | _read(region_dir / "notices.yaml")
    menu = (_read(region_dir / "menu.yaml") or _read(common / "menu.yaml")).get("menu", [])

    services = {}
    for code, s in raw["services"].items():  # in the order the pack offers them
        unknown = set(s.get("roles", [])) - set(ROLES)
        if unknown:
            raise ValueError(f"{region}: service {code} has unknown roles {sorted(unknown)} (known: {', '.join(ROLES)})")
        rules = tuple(
            Rule(
                id=r["id"],
                check=r["check"],
                reason=r["reason"],
                basis=r["basis"],
                params={k: v for k, v in r.items() if k not in {"id", "check", "reason", "basis"}},
            )
            for r in s.get("eligibility", [])
        )
        services[code] = Service(
            code=code,
            name=s["name"],
            short=s["short"],
            department=s["department"],
            basis=s["basis"],
            conditions_text=s["conditions_text"],
            conditions_basis=s["conditions_basis"],
            rules=rules,
            deadline=_undated(s.get("deadline", {})),
            result=s.get("result", ""),
            result_basis=s.get("result_basis", ""),
            materials=tuple(s.get("materials", [])),
            roles=tuple(s.get("roles", [])),
            raw=s,
        )
    materials = {
        code: Material(
            code=code,
            name=m["name"],
            basis=m["basis"],
            when=m.get("when"),
            note=m.get("note"),
            covered_by=tuple(m.get("covered_by", ())),
        )
        for code, m in raw.get("materials", {}).items()
    }
    return Pack(
        region=region,
        name=raw["name"],
        raw=raw,
        services=services,
        materials=materials,
        questions=questions,
        messages=messages,
        lexicon=lexicon,
        validation=validation,
        status=status,
        menu=menu,
        notices=notices,
    )
