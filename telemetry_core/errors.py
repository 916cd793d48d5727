"""Errors shared by the core's modules (a module of its own, so the config loader and the rule
parsers it calls import one class without importing each other)."""


class ConfigError(ValueError):
    """A configuration mistake; the message names the file, the rule and the key."""
