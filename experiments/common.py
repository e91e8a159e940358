"""Flags and start-up shared by the experiment entrypoints."""

from __future__ import annotations

import logging as py_logging
import os
import sys

from absl import flags
from absl import logging

from jdbw.data import DomainSpec
from jdbw import errors
from jdbw.errors import CheckpointError, ConfigError, DataUnavailableError

FLAGS = flags.FLAGS
flags.DEFINE_bool("library_logs", False,
                  "Also show the INFO records of the libraries (orbax, TFDS, ...); by default"
                  " only this project's progress lines, and everyone's warnings and errors.")

_OURS = tuple(os.path.dirname(os.path.abspath(m)) + os.sep for m in (
    __file__, os.path.join(os.path.dirname(__file__), "..", "jdbw", "__init__.py")))


class _OwnInfoOnly(py_logging.Filter):
  """Passes warnings and errors, and INFO records logged from jdbw/ or experiments/."""

  def filter(self, record):
    return (record.levelno >= py_logging.WARNING
            or os.path.abspath(record.pathname).startswith(_OURS))


def quiet_library_logs() -> None:
  """Hides the libraries' INFO records on absl's handler unless --library_logs."""
  handler = logging.get_absl_handler()
  if not FLAGS.library_logs and not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())

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
        f"Domain {name.upper()} source: 'digits', 'tfds:<name>' (e.g. tfds:mnist),"
        " 'idx:<dir>' (MNIST-format IDX .gz files), 'folder:<dir>[:key=value,...]' (your"
        " PNG/JPEG images; keys size, fit, test_fraction, max_bad, stream; README 'Your own"
        " data') or 'mixture2d[:key=value,...]' (2-D"
        " Gaussian modes; keys modes, radius, sigma, rotate, scale, dx, dy; needs"
        " --networks=mlp).")
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


def suggest(name: str, known) -> list[str]:
  """Flags a mistyped `name` probably meant: a flag named by one of its words first
  (`num_steps` -> `steps`), then close spellings."""
  import difflib
  known = sorted(known)
  words = [w for w in name.split("_") if w in known]
  close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
  return list(dict.fromkeys(words + close))[:3]


def parse_flags(argv):
  """absl's flag parser, with unknown and bad flags as one `error:` line and exit 2
  (`app.run(main, flags_parser=common.parse_flags)`)."""
  try:
    return flags.FLAGS(argv)
  except flags.UnrecognizedFlagError as e:
    hint = suggest(e.flagname, flags.FLAGS)
    tip = f"; did you mean {' or '.join('--' + h for h in hint)}?" if hint else ""
    print(f"error: --{e.flagname}: unknown flag{tip} (--helpfull lists them)", file=sys.stderr)
  except flags.Error as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
  sys.exit(errors.EXIT_BAD_INPUT)


def exit_on_bad_input(fn):
  """Turns ConfigError / DataUnavailableError / CheckpointError into one line on stderr
  and exit 2, a StorageError (disk full, read-only) into one line and exit 74, a
  preempted run (SIGTERM, checkpoint written) into exit 75 (and
  quiets the libraries' INFO records, see --library_logs)."""
  def wrapped(*args, **kwargs):
    quiet_library_logs()
    try:
      return fn(*args, **kwargs)
    except (ConfigError, DataUnavailableError, CheckpointError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(errors.EXIT_BAD_INPUT)
    except errors.StorageError as e:
      print(f"error: {e} (exit status {errors.EXIT_STORAGE})", file=sys.stderr)
      sys.exit(errors.EXIT_STORAGE)
    except errors.Preempted as e:
      print(f"{e} (exit status {errors.EXIT_PREEMPTED})", file=sys.stderr)
      sys.exit(errors.EXIT_PREEMPTED)
  return wrapped


def define_eval_flags() -> None:
  """Flags of the evaluation sample and classifiers (experiments.evaluate and training)."""
  from jdbw.evaluation import classifier, evaluator
  e, c = evaluator.EvalConfig(), classifier.ClassifierConfig()
  flags.DEFINE_integer("eval_samples", e.samples,
                       "Evaluation sample size per domain (fixed draws of --eval_split).")
  flags.DEFINE_integer("eval_seed", e.seed, "Seed of the evaluation sample and its noise.")
  flags.DEFINE_string("eval_split", e.split, "Split the evaluation sample is drawn from.")
  flags.DEFINE_integer("eval_batch_size", e.batch_size, "Batch size of evaluation forward passes.")
  flags.DEFINE_integer("eval_noise_sources", e.noise_sources,
                       "Sources (first of the sample) for the noise-keeps-class metric.")
  flags.DEFINE_integer("eval_noise_draws", e.noise_draws, "Noise draws per source for it.")
  flags.DEFINE_string("classifier_dir", e.classifier_dir,
                      "Cache of the evaluation classifiers (trained once per domain).")
  flags.DEFINE_integer("classifier_steps", c.steps, "Training steps of an evaluation classifier.")
  flags.DEFINE_integer("classifier_train_draws", c.train_draws,
                       "Training draws of an evaluation classifier (transforms applied once).")
  flags.DEFINE_integer("classifier_test_draws", c.test_draws,
                       "Class-balanced test-split draws that measure its accuracy.")
  flags.DEFINE_float("min_classifier_accuracy", None,
                     "Refuse classifiers below this test accuracy (default: per data set,"
                     " see jdbw/evaluation/classifier.py THRESHOLDS).")


def eval_config():
  from jdbw.evaluation import evaluator
  return evaluator.EvalConfig(
      samples=FLAGS.eval_samples, seed=FLAGS.eval_seed, split=FLAGS.eval_split,
      batch_size=FLAGS.eval_batch_size, noise_sources=FLAGS.eval_noise_sources,
      noise_draws=FLAGS.eval_noise_draws, classifier_dir=FLAGS.classifier_dir,
      min_classifier_accuracy=FLAGS.min_classifier_accuracy)


def eval_split_overlaps(training_splits: dict, split: str) -> list[str]:
  """Names of the domains whose training split shares examples with `split`."""
  from jdbw.data import sources
  return [name for name, s in training_splits.items() if sources.splits_overlap(s, split)]


def check_eval_split(specs: dict, split: str) -> None:
  """One line if the evaluation sample would be drawn from examples a domain trains on
  (validation for images: train on 'train[:90%]', evaluate on 'train[90%:]')."""
  overlapping = eval_split_overlaps({k: s.split for k, s in specs.items()}, split)
  if overlapping:
    name = overlapping[0]
    raise ConfigError(f"--eval_split: {split!r} shares examples with --split_{name}"
                      f"={specs[name].split!r}, which the run trains on; e.g. --split_{name}="
                      "train[:90%] with --eval_split=train[90%:] for validation")


def check_evaluable(specs: dict, min_classifier_accuracy: float | None) -> None:
  """One line, before anything trains, if a domain cannot be evaluated by class: no
  classifier threshold for its data set (a folder needs --min_classifier_accuracy), an
  unlabelled folder, or two folders whose class subfolder names differ (the Evaluator
  checks the same on the loaded data; this reads only the file lists)."""
  from jdbw.data import folder, mixture
  from jdbw.evaluation import classifier, evaluator
  sides = {}
  for k, s in specs.items():
    if not mixture.is_mixture(s.source):   # a mixture's classifier is exact
      classifier.threshold_for(s, min_classifier_accuracy)
    names, is_folder = (), s.source.startswith(folder.NAME + ":")
    if is_folder:
      directory, opts = folder.parse(s.source, s.flag("source"))
      names = folder.scan(directory, "train", opts, s.flag("source"))[3]
    sides[k] = (s.source, bool(names) or not is_folder, names)
  evaluator.check_labels(sides)


def classifier_config():
  from jdbw.evaluation import classifier
  return classifier.ClassifierConfig(steps=FLAGS.classifier_steps,
                                     train_draws=FLAGS.classifier_train_draws,
                                     test_draws=FLAGS.classifier_test_draws).validate()


def make_evaluator(method, specs):
  from jdbw.evaluation import evaluator
  return evaluator.Evaluator(method, specs, eval_config(), data_dir=FLAGS.data_dir,
                             classifier_config=classifier_config())
