"""Cookie parsing and serialization (SameSite=Lax by default since 2.2.0)."""


def parse(header):
    cookies = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies[name] = value
    return cookies


def serialize(name, value, secure=True, same_site="Lax"):
    attrs = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={same_site}"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)
