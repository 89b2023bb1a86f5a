"""The alarm banner on every page: the standing alarms an operator must see, refreshed live."""

from __future__ import annotations

import streamlit as st

from app.logic import alarms
from app.logic.context import RoomConfig
from twin.state import Store


def show(store: Store, plant: str) -> None:
    """Called by ui.page(): a live strip above every page's title (nothing when all is quiet)."""

    @st.fragment(run_every=RoomConfig.from_env().refresh_s)
    def strip() -> None:
        b = alarms.banner(store, plant)
        if not b.count:
            return
        text = f"ALARM BANNER: {b.text}"
        if b.top_priority in ("urgent", "high"):
            st.error(text, icon="🚨")
        else:
            st.warning(text, icon="⚠️")

    strip()
