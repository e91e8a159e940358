r"""Exports a trained generator for use without jdbw.

  python -m experiments.export --workdir W --direction xy --format stablehlo --output DIR
  python -m experiments.export --workdir W --direction xy --format savedmodel --output DIR

The exported function is the workdir's latest checkpoint's translation, its parameters
folded in: `translate(images [B, r, r, c] in [-1, 1], noise [B, d] in (-1, 1)) ->
translations [B, r, r, c']`, with the batch B symbolic (any size). Formats:

- `stablehlo`: `jax.export` serialised StableHLO in `DIR/translate.stablehlo`, loaded with
  `jax.export.deserialize(open(path, 'rb').read()).call(images, noise)` (JAX only).
- `savedmodel`: a TensorFlow SavedModel through `jax2tf` in `DIR/`, loaded with
  `tf.saved_model.load(DIR).translate(images, noise)` (TensorFlow only).

`DIR/export.json` records the shapes, the noise size, the direction, the method and the
checkpoint's step. The noise of a deterministic method is accepted and ignored.
"""

import json
import os

import numpy as np
from absl import app, flags

from experiments import common
from jdbw import export as jexport
from jdbw import inference
from jdbw.errors import ConfigError

common.define_generator_flags("Output folder (created; its parent must exist).")
flags.DEFINE_enum("format", "stablehlo", list(jexport.FORMATS), "Export format.")
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  del argv
  for name in ("workdir", "output"):
    if not FLAGS[name].value:
      raise ConfigError(f"--{name}: required")
  parent = os.path.dirname(os.path.abspath(FLAGS.output))
  if not os.path.isdir(parent):
    raise ConfigError(f"--output: the folder {parent} does not exist")
  translator = inference.Translator.from_workdir(FLAGS.workdir)
  os.makedirs(FLAGS.output, exist_ok=True)
  export = (jexport.export_stablehlo if FLAGS.format == "stablehlo"
            else jexport.export_savedmodel)
  path = export(translator, FLAGS.direction, FLAGS.output)
  _, shape, d = jexport.translation_fn(translator, FLAGS.direction)
  with open(os.path.join(FLAGS.output, "export.json"), "w") as f:
    json.dump({"format": FLAGS.format, "direction": FLAGS.direction,
               "method": translator.method.name, "step": int(np.asarray(translator.state.step)),
               "images": ["batch", *shape], "noise": ["batch", d],
               "range": [-1.0, 1.0]}, f, indent=2)
  print(path)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
