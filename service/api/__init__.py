"""The HTTP layer: the routes, the dashboard and what only a request needs.

Authentication, problem+json answers, uploads, validation, idempotency keys, byte ranges,
request limits and the OpenAPI document. It stands on the core (the rest of `service/`)
and is imported by nothing below it: the core, `pipelines/` and the client never import
it (import-linter's contracts in pyproject.toml).
"""
