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

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import common
from jdbw import inference
from jdbw.errors import ConfigError

FORMATS = ("stablehlo", "savedmodel")

common.define_generator_flags("Output folder (created; its parent must exist).")
flags.DEFINE_enum("format", "stablehlo", list(FORMATS), "Export format.")
FLAGS = flags.FLAGS


def translation_fn(translator: inference.Translator, direction: str):
  """(fn(images, noise) -> translations, image shape, noise size) with the parameters
  closed over."""
  m, st = translator.method, translator.state
  if direction not in m.directions:
    raise ConfigError(f"--direction: this model translates {', '.join(m.directions)} only,"
                      f" not {direction}")
  params, spectral = jax.device_get((st.params, st.spectral))

  def fn(images, noise):
    return m.translate(params, spectral, images, noise, direction)
  return fn, m.example_shape(direction[0]), m.config.noise_dim


def export_stablehlo(translator, direction: str, out_dir: str) -> str:
  fn, shape, d = translation_fn(translator, direction)
  b, = jax.export.symbolic_shape("b")
  exported = jax.export.export(jax.jit(fn))(
      jax.ShapeDtypeStruct((b, *shape), jnp.float32), jax.ShapeDtypeStruct((b, d), jnp.float32))
  path = os.path.join(out_dir, "translate.stablehlo")
  with open(path, "wb") as f:
    f.write(exported.serialize())
  return path


def export_savedmodel(translator, direction: str, out_dir: str) -> str:
  import tensorflow as tf
  from jax.experimental import jax2tf
  fn, shape, d = translation_fn(translator, direction)
  converted = jax2tf.convert(fn, polymorphic_shapes=[f"(b, {', '.join(map(str, shape))})",
                                                      f"(b, {d})"])
  module = tf.Module()
  module.translate = tf.function(converted, autograph=False, input_signature=[
      tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None, d), tf.float32)])
  tf.saved_model.save(module, out_dir)
  return out_dir


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
  export = export_stablehlo if FLAGS.format == "stablehlo" else export_savedmodel
  path = export(translator, FLAGS.direction, FLAGS.output)
  _, shape, d = translation_fn(translator, FLAGS.direction)
  with open(os.path.join(FLAGS.output, "export.json"), "w") as f:
    json.dump({"format": FLAGS.format, "direction": FLAGS.direction,
               "method": translator.method.name, "step": int(np.asarray(translator.state.step)),
               "images": ["batch", *shape], "noise": ["batch", d],
               "range": [-1.0, 1.0]}, f, indent=2)
  print(path)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
