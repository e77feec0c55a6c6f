"""The JSON Schema of config/AIPROD.json, generated from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from aiprod_core.config.models import AiprodConfig

SCHEMA_FILE = "AIPROD.schema.json"


def json_schema() -> dict[str, Any]:
    """The schema as a dict (keys use their JSON names, such as ``$schema``)."""
    schema = AiprodConfig.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "AIPROD configuration"
    return schema


def schema_text() -> str:
    """The schema exactly as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
