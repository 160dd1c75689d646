"""Serving: the LangGraph Agent Server auth handler (tenants by bearer token)."""
