"""The control room: `twin app` runs this with Streamlit (TWIN_HOME selects the twin home)."""

from __future__ import annotations

import streamlit as st

from app import ui

st.set_page_config(page_title="Twin control room", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", default=True),
    st.Page("pages/proposals.py", title="Proposals", url_path="proposals"),
    st.Page("pages/twin.py", title="Twin", url_path="twin"),
    st.Page("pages/replay.py", title="Replay", url_path="replay"),
    st.Page("pages/audit.py", title="Audit", url_path="audit"),
    st.Page("pages/limits.py", title="Limits", url_path="limits"),
    st.Page("pages/alarms.py", title="Alarms", url_path="alarms"),
    st.Page("pages/shift.py", title="Shift log", url_path="shift"),
    st.Page("pages/health.py", title="Health", url_path="health"),
]

signed_in = ui.user()
# The session cookie first: a click that starts the next page run as soon as the page shows who
# is signed in must not cut the run before the browser has the cookie (a reload then logs out).
ui.emit_cookie()
if signed_in is None:
    # Every page's address shows the log-in form (no "Page not found" on a deep link); after
    # the log-in the same address shows the page itself.
    nav = st.navigation(
        [st.Page(ui.login_page, title="Log in", url_path="home", default=True)]
        + [st.Page(ui.login_page, title="Log in", url_path="login")]
        + [st.Page(ui.login_page, title=p.title, url_path=p.url_path) for p in PAGES[1:]],
        position="hidden",
    )
else:
    nav = st.navigation(PAGES)
    ui.sidebar()
nav.run()
