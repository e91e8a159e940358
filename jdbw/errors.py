"""Errors raised for bad user input.

Every `ConfigError` message is one line that names the flag or file at fault and
what was expected; entrypoints print it as is and exit with status 2.
"""


class ConfigError(ValueError):
  """Bad flag value, file or directory, detected at start-up."""


class DataUnavailableError(RuntimeError):
  """A data set could not be obtained (e.g. TFDS download while offline)."""
