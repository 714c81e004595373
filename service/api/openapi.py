"""The OpenAPI 3.1 document served at /openapi.json.

Shared schemas live here; each routes module describes its own paths in `OPENAPI_PATHS`,
next to the handlers, so a route and its documentation change together.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

STATUS = {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]}
TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
        },
    },
    "Stage": {
        "type": "object",
        "required": ["name", "status", "started_at", "finished_at"],
        "properties": {
            "name": {"type": "string"},
            "status": {"type": "string", "enum": [*STATUS["enum"], "skipped"]},
            "started_at": TIME,
            "finished_at": TIME,
            "error": {"type": ["object", "null"]},
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "kind",
            "status",
            "progress",
            "stage",
            "stages",
            "attempts",
            "error",
            "result",
            "metadata",
            "created_at",
            "updated_at",
            "finished_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "kind": {"type": "string"},
            "status": STATUS,
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "stage": {"type": ["string", "null"]},
            "stages": {"type": "array", "items": {"$ref": "#/components/schemas/Stage"}},
            "attempts": {"type": "integer", "minimum": 0},
            "error": {
                "type": ["object", "null"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
            "result": {"type": ["object", "null"]},
            "metadata": {"type": "object"},
            "created_at": TIME,
            "updated_at": TIME,
            "finished_at": TIME,
            "workflow_id": {
                "type": ["string", "null"],
                "format": "uuid",
                "description": "the workflow it is a step's job of",
            },
        },
    },
    "Workflow": {
        "type": "object",
        "required": ["id", "status", "steps", "created_at", "finished_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": STATUS,
            "steps": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status", "jobs"],
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": ["waiting", "running", "succeeded", "failed", "cancelled"],
                        },
                        "jobs": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                        "error": {"type": "object"},
                    },
                },
            },
            "metadata": {"type": "object"},
            "created_at": TIME,
            "finished_at": TIME,
        },
    },
    "WorkflowList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Workflow"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "JobList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "JobItems": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
    },
    "PageText": {
        "type": "object",
        "required": ["page", "pages", "text", "truncated", "next_page"],
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "text": {"type": "string"},
            "truncated": {"type": "boolean", "description": "the page's text was cut at the page or document limit"},
            "next_page": {"type": ["integer", "null"]},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["pass", "warn", "fail"]}, "checks": {"type": "object"}},
    },
}


def problem(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def json_request(schema: dict) -> dict:
    """A required JSON request body of this schema."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json_answer(schema: dict, description: str) -> dict:
    """A JSON answer of this schema, written out in place."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema_name: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
    }


COMMON_ERRORS = {
    "400": problem("Bad request"),
    "401": problem("No or bad API key"),
    "429": problem("Rate limited, over quota, or too many failed authentications from this address"),
    "431": problem("Request header fields too large (over 64 KiB or 100 fields)"),
    "503": problem("A dependency is down; retry after Retry-After"),
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def upload_operation(summary: str, extra_fields: dict) -> dict:
    """A multipart upload that answers 202 with a Job (documents, videos)."""
    return {
        "summary": summary,
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "callback_url": {"type": "string", "format": "uri"},
                            "metadata": {"type": "string", "description": "a JSON object"},
                            **extra_fields,
                        },
                    }
                }
            },
        },
        "responses": {
            "202": json_body("Job", "Accepted: the upload is stored and the job recorded"),
            "409": problem("The same Idempotency-Key is still being accepted"),
            "413": problem("Upload too large"),
            "415": problem("The file's bytes are not an accepted type"),
            "422": problem("Invalid fields, or Idempotency-Key reused with another request"),
            **COMMON_ERRORS,
        },
    }


def document(paths: dict) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor",
            "version": "1.0.0",
            "description": "Background work for web apps: submit, then poll, stream or get a webhook.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def endpoint(paths: dict):
    spec = document(paths)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(spec)

    return openapi
