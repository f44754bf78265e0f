"""URL routing: the longest matching prefix wins, then the method."""


class Router:
    def __init__(self):
        self._routes = []

    def add(self, prefix, methods, handler):
        self._routes.append((prefix, frozenset(methods), handler))
        self._routes.sort(key=lambda r: len(r[0]), reverse=True)

    def match(self, method, path):
        for prefix, methods, handler in self._routes:
            if path.startswith(prefix) and method in methods:
                return handler
        return None
