"""Errors that carry a message for the user rather than a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file or key and the fix."""


class ConfigError(UserError):
    """A config value is missing, misspelt or out of range."""
