"""The fields extracted from a résumé, defined once: the model, and the schemas sent to LLMs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ResumeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(description="The candidate's full name, or null if absent.")
    email: str | None = Field(description="The candidate's email address, or null if absent.")
    phone: str | None = Field(description="The candidate's phone number as written, or null if absent.")
    location: str | None = Field(description="Where the candidate lives or is based, or null if absent.")
    links: list[str] = Field(description="URLs of the candidate's profiles, portfolio or website.")
    skills: list[str] = Field(description="Skills, tools and technologies, each one short, no duplicates.")
    summary: str | None = Field(description="The candidate's own summary or profile, at most a few sentences.")

    @field_validator("name", "email", "phone", "location", "summary")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        value = value.strip() if value else None
        return value or None

    @field_validator("links", "skills")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for value in (value.strip() for value in values):
            if value and value.casefold() not in seen:
                seen[value.casefold()] = value
        return list(seen.values())


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's schema minus titles, every field required, no extras (what strict mode needs)."""
    schema.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    return {**schema, "additionalProperties": False, "required": list(schema["properties"])}


RESUME_JSON_SCHEMA: dict[str, Any] = _strict(ResumeFields.model_json_schema())
"""JSON Schema for OpenAI-style strict structured output."""


def _openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI-subset flavour Gemini's `responseSchema` takes: `nullable` instead of a null branch."""
    variants = schema.get("anyOf")
    if variants:
        [kind] = [variant for variant in variants if variant.get("type") != "null"]
        described = {key: value for key, value in schema.items() if key == "description"}
        return {**_openapi(kind), "nullable": True, **described}
    converted = {key: value for key, value in schema.items() if key in ("type", "description", "required")}
    if "properties" in schema:
        converted["properties"] = {name: _openapi(prop) for name, prop in schema["properties"].items()}
        converted["propertyOrdering"] = list(schema["properties"])
    if "items" in schema:
        converted["items"] = _openapi(schema["items"])
    return converted


GEMINI_RESPONSE_SCHEMA: dict[str, Any] = _openapi(RESUME_JSON_SCHEMA)

INSTRUCTIONS = (
    "You extract facts from the text of one résumé (CV). Reply with JSON only, matching the "
    "schema. Copy values as they appear in the text; never invent them. Use null for a "
    "missing value and [] for a missing list."
)
