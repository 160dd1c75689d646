"""Seeing what happened: OpenTelemetry spans, JSON logs with correlation ids, session reports."""
