"""The one exception type users see: a message they can act on, printed by the CLI without a trace."""


class VasaError(Exception):
    """Bad input or an unusable environment, described in one line."""
