"""Exporting a trained generator for use without jdbw (StableHLO through `jax.export`, a
TensorFlow SavedModel through `jax2tf`); `experiments.export` is its command line."""

import os

import jax
import jax.numpy as jnp

from jdbw import inference
from jdbw.errors import ConfigError

FORMATS = ("stablehlo", "savedmodel")


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
