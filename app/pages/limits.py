"""Limits: operator limits per tag, editable by engineers inside the engineering limits."""

from __future__ import annotations

import streamlit as st

from app import ui
from app.logic import limits
from twin.auth import Role
from twin.errors import TwinError

p = ui.page()
st.title(f"Limits: {p.spec.name}")
st.caption(
    "Engineering limits come from plant.toml and are never crossed. Operator limits are "
    "soft constraints for the planner and the guard; engineers may change them here."
)
frame = limits.limits_frame(p.store, p.spec)
if not ui.allowed(Role.ENGINEER):
    st.dataframe(frame, hide_index=True)
    st.info(f"Your role ({p.user.role}) may view limits; engineers change them.")
else:
    edited = st.data_editor(
        frame,
        hide_index=True,
        key="limits-editor",
        disabled=[c for c in frame.columns if c not in ("operator lo", "operator hi")],
    )
    reason = st.text_input("Reason for the change (goes to the audit log)", key="limits-reason")
    if st.button("Save operator limits", key="limits-save"):
        edits = limits.changes(frame, edited)
        try:
            problems = limits.apply_changes(p.store, p.user, p.spec, edits, reason)
        except TwinError as exc:
            st.error(str(exc))
        else:
            for msg in problems:
                st.error(msg)
            done = len(edits) - len(problems)
            if done:
                st.success(f"{done} operator limit change(s) saved and audited.")
            elif not edits:
                st.info("No changes to save.")
st.subheader("History of changes")
st.dataframe(p.store.operator_limit_history(p.spec.name))
