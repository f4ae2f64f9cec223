"""Load tests and benchmarks, run by hand against a live platform (not in the pytest suites).

bench         throughput and latency of the detector and the inspect pipeline, HTTP vs in-process
capture_cost  what drift capture costs on the request path (p50/p95, capture on vs off)
locustfile    Locust scenario: inspect-pipeline callers, each with a sticky canary key
rollout_load  drives inspect with Locust while one rollout promotes and another rolls back
"""

__all__ = ["bench", "capture_cost", "locustfile", "rollout_load"]
