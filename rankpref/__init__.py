"""rankpref: learn why people prefer things, and rank with it."""

__version__ = "0.1.0"
