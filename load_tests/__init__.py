"""Load tests and benchmarks, run by hand (not in the pytest suites).

bench         canaryserve vs the plain FastAPI + ORT server (peer.py), or HTTP vs in-process
peer          the plain server a user would write instead (FastAPI + uvicorn + ONNX Runtime)
media         the real-derived benchmark inputs: an 810x1080 photo, a 10 s 25 fps clip
capture_cost  what drift capture costs on the request path (p50/p95, capture on vs off)
locustfile    Locust scenario: inspect-pipeline callers, each with a sticky canary key
rollout_load  drives inspect with Locust while one rollout promotes and another rolls back
"""

__all__ = ["bench", "capture_cost", "locustfile", "rollout_load"]
