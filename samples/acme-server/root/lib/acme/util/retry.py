"""Exponential backoff with jitter."""

import random
import time


def backoff(attempt, base=0.5, cap=30.0):
    time.sleep(min(cap, base * 2 ** attempt) * random.uniform(0.5, 1.0))
