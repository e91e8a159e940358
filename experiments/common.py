"""Flags and start-up shared by the experiment entrypoints."""

from __future__ import annotations

import dataclasses
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
        " PNG/JPEG images; keys size, fit, test_fraction, max_bad, stream, half; docs/guide.md"
        " 'Your own data') or 'mixture2d[:key=value,...]' (2-D"
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


def _undecodable_flagfile(argv) -> str | None:
  """The first --flagfile of `argv` (or of the flag files it names) that is not text."""
  for a in argv:
    if a.startswith("--flagfile="):
      path = a.split("=", 1)[1]
      try:
        with open(path, encoding="utf-8") as f:
          nested = [line.strip() for line in f if line.strip().startswith("--flagfile=")]
      except UnicodeDecodeError:
        return path
      except OSError:
        continue
      inner = _undecodable_flagfile(nested)
      if inner:
        return inner
  return None


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
  except UnicodeDecodeError as e:
    print(f"error: --flagfile: {_undecodable_flagfile(argv) or 'a flag file'} is not a text"
          f" file of flags ({e.reason} at byte {e.start})", file=sys.stderr)
  sys.exit(errors.EXIT_BAD_INPUT)


def exit_on_bad_input(fn):
  """Refuses positional arguments, and turns ConfigError / DataUnavailableError /
  CheckpointError into one line on stderr and exit 2, a StorageError (disk full, read-only) into one line and exit 74, a
  preempted run (SIGTERM, checkpoint written) into exit 75 (and
  quiets the libraries' INFO records, see --library_logs)."""
  def wrapped(argv, *args, **kwargs):
    quiet_library_logs()
    try:
      if len(argv) > 1:
        raise ConfigError(f"{argv[1]!r}: unexpected positional argument; flags take the form"
                          " --name=value")
      return fn(argv, *args, **kwargs)
    except (ConfigError, DataUnavailableError, CheckpointError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(errors.EXIT_BAD_INPUT)
    except errors.StorageError as e:
      print(f"error: {e} (exit status {errors.EXIT_STORAGE})", file=sys.stderr)
      sys.exit(errors.EXIT_STORAGE)
    except errors.Preempted as e:
      print(f"{e} (exit status {e.exit_status})", file=sys.stderr)
      sys.exit(e.exit_status)
  return wrapped


def define_generator_flags(output_help: str) -> None:
  """--workdir, --direction, --output: what the tools that use a trained generator
  (experiments.translate, experiments.export) share."""
  flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint is used).")
  flags.DEFINE_enum("direction", "xy", ["xy", "yx"], "X->Y (G_xy) or Y->X (G_yx).")
  flags.DEFINE_string("output", None, output_help)


def _eval_sections():
  from jdbw.evaluation import classifier, evaluator
  return evaluator.EvalConfig, classifier.ClassifierConfig


def define_section_flags(cls, flag_values=FLAGS) -> None:
  """A flag per setting of a config section (`jdbw.config.setting`), named
  `jdbw.config.flag_name`, with the field's default and help."""
  for f in dataclasses.fields(cls):
    if f.metadata.get("help"):
      _define_flag(f, f.default, f.metadata["help"], f.metadata.get("choices"), flag_values)


def section_from_flags(cls):
  """A config section from its flags (the fields without a flag keep their defaults)."""
  from jdbw import config as config_lib
  return cls(**{f.name: FLAGS[config_lib.flag_name(f)].value
                for f in dataclasses.fields(cls) if f.metadata.get("help")})


def define_eval_flags() -> None:
  """Flags of the evaluation sample, its metrics and the classifiers (experiments.evaluate
  and training), generated from `EvalConfig` and `ClassifierConfig`."""
  for cls in _eval_sections():
    define_section_flags(cls)


def eval_config():
  return section_from_flags(_eval_sections()[0])


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


def check_evaluable(specs: dict, min_classifier_accuracy: float | None,
                    inception: bool = False) -> None:
  """One line, before anything trains, if a domain cannot be evaluated by class: no
  classifier threshold for its data set (a folder needs --min_classifier_accuracy), an
  unlabelled folder, or two folders whose class subfolder names differ (the Evaluator
  checks the same on the loaded data; this reads only the file lists). With
  `inception` (FID/KID) unlabelled folders are evaluable: by those alone."""
  from jdbw.data import folder
  from jdbw.evaluation import classifier, evaluator
  sides = {}
  for k, s in specs.items():
    src = s.parsed
    names = ()
    if src.is_folder:
      names = folder.scan(src.arg, "train", src.folder, s.flag("source"))[3]
    sides[k] = (s.source, bool(names) or not src.is_folder, names)
  if inception and not all(labelled for _, labelled, _ in sides.values()):
    return   # scored by FID and KID alone: no classifiers
  for s in specs.values():
    if not s.parsed.is_points:   # a mixture's classifier is exact
      classifier.threshold_for(s, min_classifier_accuracy)
  evaluator.check_labels(sides)


def classifier_config():
  return section_from_flags(_eval_sections()[1]).validate()


def make_evaluator(method, specs):
  from jdbw.evaluation import evaluator
  return evaluator.Evaluator(method, specs, eval_config(), data_dir=FLAGS.data_dir,
                             classifier_config=classifier_config())


# Models whose default batch is not RunConfig's (the authors' MNIST-SVHN batch).
DEFAULT_BATCH = {"distancegan": 16}

# Model fields that are not flags of their own: set from the domain flags, or (oracle_map)
# computed from them by --oracle_generators.
DERIVED = frozenset({"channels_x", "channels_y", "resolution", "point_dim", "oracle_map"})
_DEFINE = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float, "bool": flags.DEFINE_bool,
           "str": flags.DEFINE_string}


def _define_flag(field: dataclasses.Field, default, text: str, choices=None,
                 flag_values=FLAGS) -> None:
  """The flag of a config field (named `jdbw.config.flag_name`): an enum with `choices`,
  else the annotation's type (`float | None`: a float flag whose default may be None)."""
  from jdbw import config as config_lib
  name = config_lib.flag_name(field)
  if choices:
    flags.DEFINE_enum(name, default, list(choices), text, flag_values=flag_values)
  else:
    typ = field.type if isinstance(field.type, str) else field.type.__name__
    _DEFINE[typ.split(" |")[0]](name, default, text, flag_values=flag_values)


def define_run_setting(name: str) -> None:
  """The flag of one run setting (a `jdbw.train.RunConfig` field, e.g. 'pairing'), for an
  entry point that takes it without the whole run (`preview_data`)."""
  from jdbw import train
  f = {f.name: f for f in dataclasses.fields(train.RunConfig)}[name]
  _define_flag(f, f.default, f.metadata["help"], f.metadata.get("choices"))


def model_settings() -> dict[str, dict]:
  """{field: {model: default}} of every registered method's settable config fields."""
  from jdbw import methods
  out = {}
  for model, entry in methods.REGISTRY.items():
    for f in dataclasses.fields(entry.config):
      if f.name not in DERIVED:
        out.setdefault(f.name, {})[model] = f.default
  return out


def define_model_flags(flag_values=FLAGS) -> None:
  """One flag per setting of the registered methods' configs, generated from the fields
  (`jdbw.config.setting`: help and choices; the type from the annotation). Every flag's
  default is None: an unset flag takes the --model's own default, listed in the help.
  `flag_values`: where to define them (tests use their own `flags.FlagValues()`)."""
  from jdbw import config as config_lib
  from jdbw import methods
  configs = [e.config for e in methods.REGISTRY.values()]
  fields = {f.name: f for c in configs for f in dataclasses.fields(c)}
  for name, defaults in model_settings().items():
    text, choices = config_lib.help_of(configs, name)
    if text is None:
      raise TypeError(f"config field {name!r} has no help: declare it with jdbw.config.setting")
    values = set(map(repr, defaults.values()))
    text += (f" (default {next(iter(defaults.values()))!r}" if len(values) == 1 else
             " (default per --model: " + ", ".join(f"{m} {v!r}" for m, v in defaults.items()))
    text += ")" if len(defaults) == len(configs) else f"; {', '.join(defaults)} only)"
    _define_flag(fields[name], None, text, choices, flag_values)


def model_config(model: str, strict: bool = True):
  """The `model`'s config from the flags; a flag left unset takes that model's default.

  `strict`: a model flag given on the command line / flagfile that the model does not
  use is an error (no silently dead flags).
  """
  from jdbw import methods
  cls = methods.get(model).config
  fields = {f.name for f in dataclasses.fields(cls)}
  given = {f for f in model_settings() if FLAGS[f].present or FLAGS[f].value is not None}
  if strict:
    unused = sorted(given - fields)
    if unused:
      raise ConfigError(f"--{unused[0]}: not a setting of --model={model} (unused: "
                        f"{', '.join('--' + u for u in unused)})")
  values = {f: FLAGS[f].value for f in given & fields}
  if FLAGS.oracle_generators:
    if model != "jd":
      raise ConfigError(f"--oracle_generators: not a setting of --model={model}")
    from jdbw.data import mixture
    specs = domain_specs()
    for side, spec in specs.items():
      if not spec.parsed.is_points:
        raise ConfigError(f"--oracle_generators: needs two {mixture.NAME} domains; got"
                          f" --source_{side}={spec.source}")
    m, c = mixture.true_map(specs["x"].parsed.mixture, specs["y"].parsed.mixture)
    values["oracle_map"] = (tuple(m.reshape(-1)), tuple(c))
  return cls(channels_x=FLAGS.channels_x, channels_y=FLAGS.channels_y,
             resolution=FLAGS.resolution, **values)


def define_run_flags() -> None:
  """The training run's flags (`jdbw.train.RunConfig`), the model choice, --oracle_generators
  and multi-host start-up: what every training entry point takes besides the settings."""
  from jdbw import methods, train
  for f in dataclasses.fields(train.RunConfig):
    if not f.metadata.get("help"):
      continue   # not a flag of its own (data_dir is a domain flag)
    default, text = f.default, f.metadata["help"]
    if f.name == "batch_size":   # the model's own default batch
      default, text = None, text + (" Default: " + ", ".join(
          f"{m} {b}" for m, b in DEFAULT_BATCH.items()) + f", the others {f.default}.")
    _define_flag(f, default, text, f.metadata.get("choices"))
  flags.DEFINE_bool("jax_distributed", False,
                    "Call jax.distributed.initialize() first: one process per host (TPU pod"
                    " slices, Slurm and Open MPI detect the rest; elsewhere give the three"
                    " flags below).")
  flags.DEFINE_string("coordinator_address", None,
                      "--jax_distributed: host:port of process 0 (e.g. localhost:12355).")
  flags.DEFINE_integer("num_processes", None, "--jax_distributed: number of processes.")
  flags.DEFINE_integer("process_id", None, "--jax_distributed: this process's index.")
  flags.DEFINE_enum("model", "jd", methods.names(),
                    "; ".join(f"{k} = {e.summary}" for k, e in methods.REGISTRY.items()) + ".")
  flags.DEFINE_bool("oracle_generators", False,
                    "2-D mixture only: fix G_xy to the true map between the two mixture2d"
                    " domains and G_yx to its inverse; only D and W train (the unit test of"
                    " the D-W game).")
  flags.DEFINE_bool("dry_run", False,
                    "Check the flags, the model config(s) and the domains' source strings,"
                    " print what would run, and stop before any data is read or anything"
                    " compiles (offline-safe; class skews are checked against the data at"
                    " start-up).")


def run_config():
  """`jdbw.train.RunConfig` from the run flags (unchecked: call `.validate()`): every
  field that has a flag (`define_run_flags`), the batch size's per-model default, and
  --data_dir (a domain flag)."""
  from jdbw import train
  kw = {f.name: FLAGS[f.name].value for f in dataclasses.fields(train.RunConfig)
        if f.metadata.get("help")}
  if kw["batch_size"] is None:
    kw["batch_size"] = DEFAULT_BATCH.get(FLAGS.model, train.RunConfig.batch_size)
  return train.RunConfig(**kw, data_dir=FLAGS.data_dir)


def define_training_flags() -> None:
  """Every flag of the training entry point (domains, evaluation, run, model settings);
  once per process, so the trainer, the study runner and the notebook share them."""
  if "model" in FLAGS:
    return
  define_domain_flags()
  define_eval_flags()
  define_run_flags()
  define_model_flags()
