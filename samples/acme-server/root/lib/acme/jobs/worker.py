"""Job workers: retry with backoff, give up after max_attempts."""

from acme.util.retry import backoff


def run_one(job, handlers, max_attempts=5):
    handler = handlers[job["kind"]]
    for attempt in range(max_attempts):
        try:
            return handler(job["payload"])
        except Exception:
            backoff(attempt)
    raise RuntimeError(f"job {job['id']} failed {max_attempts} times")
