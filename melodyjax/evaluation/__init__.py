"""Held-out scores of the model and of baselines, statistics, the report."""
