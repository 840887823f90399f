"""The personalised material checklist: the union of what the chosen services need, each once."""

from __future__ import annotations

from dataclasses import dataclass

from dialogs.conditions import CONDITIONS, Case
from dialogs.pack import Material


@dataclass(frozen=True)
class ChecklistItem:
    material: Material
    services: tuple[str, ...]


def checklist(case: Case) -> list[ChecklistItem]:
    needed: dict[str, list[str]] = {}
    for code in case.services:
        for m in case.pack.services[code].materials:
            material = case.pack.materials[m]
            if material.when and not CONDITIONS[material.when](case):
                continue
            needed.setdefault(m, []).append(code)
    for m in list(needed):
        # "居民身份证或户口本": already there when another service asks for either of them.
        if any(other in needed for other in case.pack.materials[m].covered_by):
            del needed[m]
    return [ChecklistItem(case.pack.materials[m], tuple(services)) for m, services in needed.items()]
