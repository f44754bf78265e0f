"""An in-process LRU cache with per-entry expiry."""

import time
from collections import OrderedDict


class MemoryCache:
    def __init__(self, capacity=10000):
        self._items = OrderedDict()
        self._capacity = capacity

    def get(self, key):
        item = self._items.get(key)
        if item is None or item[1] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return item[0]

    def set(self, key, value, ttl=300):
        self._items[key] = (value, time.monotonic() + ttl)
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
