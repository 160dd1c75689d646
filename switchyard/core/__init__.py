"""The bottom layer: errors, model loading, the offline model, pricing, redaction, resilience.

Nothing here imports another Switchyard package.
"""
