"""Audit: the hash-chained log, filtered by time, user and kind, its verification and export."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from app import ui
from app.logic import audit_view
from twin import audit

p = ui.page()
st.title("Audit log")
result = audit.verify(p.store)
(st.success if result.ok else st.error)(str(result))

users, kinds = audit_view.choices(p.store)
c = st.columns(5)
today = datetime.now(UTC).date()
start_d = c[0].date_input("From (UTC)", today - timedelta(days=7), key="audit-from")
end_d = c[1].date_input("To (UTC)", today, key="audit-to")
who = c[2].selectbox("User", ["(any)", *users], key="audit-user")
kind = c[3].selectbox("Kind", ["(any)", *kinds], key="audit-kind")
text = c[4].text_input("Contains", key="audit-text")
only_plant = st.checkbox(f"Only plant {p.plant}", value=False, key="audit-plant")
f = audit_view.AuditFilter(
    start=datetime.combine(start_d, time.min, UTC),
    end=datetime.combine(end_d, time.max, UTC),
    user=None if who == "(any)" else who,
    kind=None if kind == "(any)" else kind,
    plant=p.plant if only_plant else None,
    text=text or None,
)
rows = audit_view.filtered(p.store, f)
st.caption(f"{len(rows)} entries")
st.dataframe(audit_view.audit_frame(rows), hide_index=True)
st.download_button(
    "Export CSV",
    audit_view.export_bytes(rows),
    file_name="audit.csv",
    mime="text/csv",
    key="audit-export",
)
