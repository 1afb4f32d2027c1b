"""Errors that carry a message for the user rather than a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file or key and the fix."""


class ConfigError(UserError):
    """A config value is missing, misspelt or out of range."""


def json_object(text: str, option: str, example: str = "") -> dict:
    """``text``, a command-line option's JSON object, parsed; else a UserError naming
    ``option`` (and an ``example`` of the right form)."""
    import json

    hint = f"; e.g. '{example}'" if example else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{option} is not valid JSON ({exc}){hint}") from None
    if not isinstance(value, dict):
        raise UserError(f"{option} must be a JSON object{hint}")
    return value
