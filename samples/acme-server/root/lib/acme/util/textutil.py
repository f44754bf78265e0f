"""Text helpers for templates and logs."""

import html


def escape(text):
    return html.escape(text, quote=True)


def truncate(text, width=80, ellipsis="..."):
    return text if len(text) <= width else text[: width - len(ellipsis)] + ellipsis
