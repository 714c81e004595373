"""What the tests and the benchmarks stand on: real servers and processes they start
(PostgreSQL, Redis, S3, SMTP), local servers speaking the paid APIs' wire protocols, and
helpers to drive the API and workers. `tests/` and `bench/` both import it."""
