"""Real servers and processes the tests start: Redis, databases, S3, protocol fakes."""
