"""Queue benchmarks: throughput and crash recovery, one runner per system."""
