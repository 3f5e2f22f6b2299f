__version__ = "0.1.0.dev0"
"""This installation's version (PEP 440): what a bug report should name, and what code that
must tell releases apart compares."""
