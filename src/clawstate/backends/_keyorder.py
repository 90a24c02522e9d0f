"""Key order shared by every backend: UTF-8 byte order, and prefix ranges in it.

Every backend sorts keys by their UTF-8 bytes (SQLite's BINARY collation, Redis'
ZRANGEBYLEX, PostgreSQL's COLLATE "C"), which equals code-point order; a prefix
scan is then the half-open range ``[prefix, prefix_upper_bound(prefix))``.
"""

from __future__ import annotations

__all__ = ["prefix_upper_bound"]


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    ``None`` when there is none (the prefix is all U+10FFFF).  Skips the
    surrogate range, which cannot be encoded to UTF-8.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
