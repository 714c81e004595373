"""What the service tells its operators: structured logs, Prometheus metrics, traces, error
reports and the live picture of queues and workers. Part of the core: it imports neither
the HTTP layer nor `pipelines/`.
"""
