"""Paths and text in error messages: a path shown as printable text whatever bytes its name holds, and
where bytes stop being UTF-8.

On POSIX a file name is bytes; Python hands names that are not UTF-8 over as strings with their odd
bytes as lone surrogates (``surrogateescape``), which a UTF-8 console or log file cannot encode.
:func:`shown` writes such bytes as ``\\xNN``, so a message naming the file prints anywhere.
"""

from __future__ import annotations

import os

__all__ = ["non_utf8", "shown"]


def shown(path: os.PathLike | str) -> str:
    """``path`` as printable text on one line: its bytes that are not UTF-8 written ``\\xNN``
    (``caf\\xe9``), and characters that do not print (a NUL, a line break) as Python escapes them."""
    text = os.fspath(path)
    try:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file-system byte stands for (JSON "\ud800")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def non_utf8(data: bytes) -> tuple[int, str] | None:
    """Where ``data`` stops being UTF-8: the offset of its first byte that does not decode, and
    ``"byte 0xe9 at offset 3"``; None where all of it decodes."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start, f"byte 0x{data[error.start]:02x} at offset {error.start}"
    return None
