"""The dashboard pages: scripts run by st.navigation from streamlit_app.py (not imported)."""
