"""The one length limit on what a record says: messages, errors and details from tools and emitters.

An emitter or a tool can say megabytes (a one-line stderr, an exception holding a whole config).
What reaches a record, and so summary.json, summary.csv, the pages and the console, is clipped
here, keeping both ends (the start says what failed, the end is usually the tool's last words).
"""
from __future__ import annotations

from .record import Record

MAX_CHARS = 2000


def clip(text, limit: int = MAX_CHARS) -> str:
    """text (anything: str() of it) at most about limit characters, its start and end kept."""
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit:
        return text
    head, tail = limit // 2, limit - limit // 2
    return f"{text[:head]} … [{len(text) - head - tail} characters cut] … {text[-tail:]}"


def clip_record(record: Record) -> Record:
    """The record with every free-text part clipped (in place; returned for convenience)."""
    for check in record.checks:
        check.message = clip(check.message)
    for part in (record.xla, record.localisation):
        if part is not None and part.error:
            part.error = clip(part.error)
    if record.localisation is not None:
        record.localisation.summary = clip(record.localisation.summary)
    if record.structural is not None:
        record.structural.detail = [clip(d) for d in record.structural.detail]
    record.skipped = {name: clip(why) for name, why in record.skipped.items()}
    return record
