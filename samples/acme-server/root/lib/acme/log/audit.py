"""The audit log: who changed what, one JSON line per event."""

import json
import time


def record(stream, actor, action, subject):
    stream.write(json.dumps({"t": time.time(), "actor": actor, "action": action, "subject": subject}) + "\n")
    stream.flush()
