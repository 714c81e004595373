"""PostgreSQL: the pools for the primary and its replicas, which one serves a read,
read-your-writes tokens, multi-host URLs and the migrations. Part of the core: it imports
neither the HTTP layer nor `pipelines/`.
"""
