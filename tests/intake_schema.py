"""The submitted application checked against docs/intake-openapi.yaml (JSON Schema 2020-12, as OpenAPI 3.1 uses)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "intake-openapi.yaml"


@cache
def _validator() -> Draft202012Validator:
    spec = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    schema = {"$ref": "#/components/schemas/Application", "components": spec["components"]}
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_valid_application(document: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "application does not match docs/intake-openapi.yaml:\n" + "\n".join(
        f"  {'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:10]
    )
