"""Comparison tables and figures beside the paper's numbers (built on the study engine)."""
