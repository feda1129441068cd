"""Text from files and folders, made safe to print in a terminal.

File and folder names are data: a name may hold terminal escape codes
(``\\x1b]0;title\\x07``, ``\\x1b[2J``) or text that rich reads as markup
(``a[/b]``).  Everything the CLI prints that may contain a name goes through
:func:`printable` (plain ``print``) or :func:`for_rich` (rich consoles).
"""

from __future__ import annotations

import re

from rich.markup import escape

#: C0 controls (tab and newline too: one warning is one line), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    r"""``text`` with every control character shown as a ``\xNN`` escape.

    Examples
    --------
    >>> printable("scan\x1b[2J.nii.gz")
    'scan\\x1b[2J.nii.gz'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def for_rich(text: str) -> str:
    r"""``text`` made printable and escaped for rich markup (``[`` is literal).

    Examples
    --------
    >>> for_rich("out/a[/b]")
    'out/a\\[/b]'
    """
    return escape(printable(text))


__all__ = ["for_rich", "printable"]
