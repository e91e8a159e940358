"""Flags and start-up shared by the experiment entrypoints."""

from __future__ import annotations

import sys

from absl import flags

from jdbw.data import DomainSpec
from jdbw.errors import ConfigError, DataUnavailableError

FLAGS = flags.FLAGS

_DOMAIN_DEFAULTS = {
    # The embedded default: scikit-learn digits <-> SR-digits (zeros at one half).
    "x": dict(source="digits", classes="", transform="plain"),
    "y": dict(source="digits", classes="0:0.5", transform="sr"),
}


def define_domain_flags() -> None:
  """--source_{x,y}, --split_{x,y}, --classes_{x,y}, --transform_{x,y}, --channels_{x,y}."""
  for name, d in _DOMAIN_DEFAULTS.items():
    flags.DEFINE_string(
        f"source_{name}", d["source"],
        f"Domain {name.upper()} source: 'digits', 'tfds:<name>' (e.g. tfds:mnist) or"
        " 'idx:<dir>' (MNIST-format IDX .gz files).")
    flags.DEFINE_string(f"split_{name}", "train", f"Domain {name.upper()} split.")
    flags.DEFINE_string(
        f"classes_{name}", d["classes"],
        f"Domain {name.upper()} class probabilities 'c:p,...' (e.g. '0:0.5'); unlisted"
        " classes share the rest in proportion to their natural frequencies.")
    flags.DEFINE_enum(f"transform_{name}", d["transform"], ["plain", "sr"],
                      f"Domain {name.upper()} transform: plain resize, or SR-MNIST's"
                      " pad/rotate/crop/resize.")
    flags.DEFINE_integer(f"channels_{name}", 1, f"Domain {name.upper()} channels (1 or 3).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (local path or gs://bucket/...).")
  flags.DEFINE_integer("resolution", 32, "Image side length fed to the models.")


def domain_specs() -> dict[str, DomainSpec]:
  return {
      name: DomainSpec(source=FLAGS[f"source_{name}"].value, split=FLAGS[f"split_{name}"].value,
                       classes=FLAGS[f"classes_{name}"].value,
                       transform=FLAGS[f"transform_{name}"].value,
                       channels=FLAGS[f"channels_{name}"].value, name=name)
      for name in _DOMAIN_DEFAULTS
  }


def exit_on_bad_input(fn):
  """Turns ConfigError / DataUnavailableError into one line on stderr and exit 2."""
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except (ConfigError, DataUnavailableError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  return wrapped
