"""The /metrics endpoint in the Prometheus text format."""

COUNTERS = {}


def inc(name, value=1):
    COUNTERS[name] = COUNTERS.get(name, 0) + value


def render():
    lines = ['acme_build_info{version="2.2.0",build="2200"} 1']
    lines += [f"{name} {value}" for name, value in sorted(COUNTERS.items())]
    return "\n".join(lines) + "\n"
