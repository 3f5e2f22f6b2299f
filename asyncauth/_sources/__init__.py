"""Credential sources, one module each. The public ones are re-exported from ``asyncauth``."""
