"""The shift log as the control room shows and exports it.

An entry is exported on its own (HTML) or appended to the replay's incident report, so that an
investigator reads what the operators on shift knew and handed over beside the trends.
"""

from __future__ import annotations

import html

import pandas as pd

from twin.state.alarms import ShiftRecord


def entry_title(e: ShiftRecord) -> str:
    taken = f", taken over by {e.acked_by}" if e.acked_by else ", not yet taken over"
    return f"Shift log {e.id}: {e.author} at {e.at.strftime('%Y-%m-%d %H:%M')} UTC{taken}"


def section_frames(e: ShiftRecord) -> dict[str, pd.DataFrame]:
    """The entry's tables: decisions taken, what is pending, standing alarms at handover."""
    return {
        "Decided during the shift": pd.DataFrame(e.approved),
        "Pending at handover": pd.DataFrame(e.pending),
        "Standing alarms at handover": pd.DataFrame(e.standing),
    }


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>none</p>"
    return frame.to_html(index=False, border=0, escape=True)


def shift_html(entries: list[ShiftRecord]) -> str:
    """An HTML fragment: each entry with its notes, tables and who took it over."""
    esc = html.escape
    parts = [f"<h2>Shift log ({len(entries)})</h2>"]
    for e in entries:
        parts.append(f"<h3>{esc(entry_title(e))}</h3>")
        parts.append(f"<p>{esc(e.notes).replace(chr(10), '<br>')}</p>")
        if e.acked_by:
            note = f": {esc(e.ack_note)}" if e.ack_note else ""
            when = e.acked_at.strftime("%Y-%m-%d %H:%M") if e.acked_at else ""
            parts.append(f"<p>Acknowledged by {esc(e.acked_by)} at {when} UTC{note}</p>")
        for title, frame in section_frames(e).items():
            parts.append(f"<h4>{title}</h4>{_table(frame)}")
    return "\n".join(parts)


def shift_document(entries: list[ShiftRecord], plant: str) -> str:
    """A whole HTML file of the shift log, for the download button."""
    head = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(plant)} shift log</title></head><body>"
    )
    return f"{head}<h1>{html.escape(plant)}: shift log</h1>{shift_html(entries)}</body></html>"


def with_shift_log(report: str, entries: list[ShiftRecord]) -> str:
    """The incident report (app.logic.report) with the shift log appended before its end."""
    if not entries:
        return report
    cut = report.rfind("</body>")
    cut = len(report) if cut < 0 else cut
    return report[:cut] + shift_html(entries) + report[cut:]
