"""Text for people, the same everywhere in the controller: the rule for user text that must
stay on one line, how untrusted text is echoed in a one-line message, and how durations are
written.

Not here: how recipe numbers are written (``recipe.schema.format_number``), the trace's CSV
cells (``records.trace``), tables and colours (``operator.console``, ``analysis``). The bottom
layer: it imports nothing from the controller, and every part of it may import this.
"""

from __future__ import annotations

import math
import unicodedata

__all__ = [
    "hm",
    "hms",
    "one_line",
    "printable_line",
    "printable_text",
    "span",
    "unsafe_char",
]

# Text a user writes that ends up in the trace (CSV), the audit, file names, the console and
# the report: control characters (C0, C1: CR, NEL), line and paragraph separators (U+2028,
# U+2029) and invisible format characters (bidi overrides, zero-width joiners, BOM) would
# split a CSV row or a log line, or make what is shown differ from what is stored.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def unsafe_char(text: str, allowed: str = "") -> str | None:
    """The first character of ``text`` that may not appear in a name or message (see
    ``_UNSAFE_CATEGORIES``), other than those in ``allowed``; None if there is none."""
    if text.isprintable():  # the common case, in C: no control or separator at all
        return None
    for ch in text:
        if ch not in allowed and unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            return ch
    return None


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def printable_line(value: str) -> str:
    """Pydantic after-validator: one line of printable text. Raises ``ValueError`` naming
    the first control, line-break or invisible format character."""
    ch = unsafe_char(value)
    if ch is not None:
        raise ValueError(f"must be one line of printable text: no control, line-break or "
                         f"invisible format character (found {_describe(ch)})")
    return value


def printable_text(value: str) -> str:
    """Pydantic after-validator: printable text that may span lines (newline and tab
    allowed). Raises ``ValueError`` naming the first other control or separator."""
    ch = unsafe_char(value, allowed="\n\t")
    if ch is not None:
        raise ValueError(f"must be printable text: newlines and tabs, but no other control, "
                         f"line-break or invisible format character (found {_describe(ch)})")
    return value


def one_line(text: str, limit: int = 80) -> str:
    """``text`` made safe to echo in a one-line message: each run of whitespace (newlines,
    tabs, separators) becomes one space, any other character that is not printable is
    escaped as ``repr`` escapes it (``\\x1b``), and at most ``limit`` characters are kept
    (the last one then "…")."""
    text = " ".join(text.split())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- durations ---------------------------------------------------------------------------


def _whole_s(seconds: float) -> int:
    """Whole seconds, the fraction dropped (a countdown never shows more time than is left);
    float noise is not a fraction (steps planned to 3 h may add up to 10799.9999999 s)."""
    return int(round(seconds, 6))


def hms(seconds: float | None) -> str:
    """A duration as ``H:MM:SS``: ``3725.9`` -> ``"1:02:05"``, ``-5`` -> ``"-0:00:05"``, and
    ``"—"`` for None or a value that is not finite. For the live view and the report."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = _whole_s(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    return f"{sign}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def hm(seconds: float | None) -> str:
    """A duration as hours and minutes, the rest dropped: ``5430`` -> ``"1 h 30 min"``; as
    ``hms`` for negative, None or not finite. For planned durations (``furnace plan``)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = _whole_s(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    return f"{sign}{s // 3600} h {s % 3600 // 60:02d} min"


def span(seconds: float) -> str:
    """A duration for a message, to 3 significant figures in minutes, hours or days:
    ``5400`` -> ``"1.5 h"``; ``"forever"`` when not finite."""
    if not math.isfinite(seconds):
        return "forever"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"
