"""The operator's dashboard at /dashboard: queues, workers, throughput, jobs; retry and cancel."""
