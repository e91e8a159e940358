r"""Translates images with a trained workdir.

  python -m experiments.translate --workdir W --input in.png --output out.png --direction xy
  python -m experiments.translate --workdir W --input in.npy --output out.npy --direction yx

.npy: float images in [-1, 1], [N, H, W, C] or [H, W, C]. .png: one image (grey or
RGB), resized to the model resolution; the output PNG holds the translation.
"""

import os

import numpy as np
from absl import app, flags

from experiments import common
from jdbw import inference
from jdbw.errors import ConfigError

flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint is used).")
flags.DEFINE_string("input", None, "Input .npy or .png.")
flags.DEFINE_string("output", None, "Output .npy or .png.")
flags.DEFINE_enum("direction", "xy", ["xy", "yx"], "X->Y (G_xy) or Y->X (G_yx).")
flags.DEFINE_integer("seed", 0, "Seed of the noise z.")
FLAGS = flags.FLAGS


def _read(path, tr, direction):
  if path.endswith(".npy"):
    return np.load(path)
  from PIL import Image
  c = tr.method.config
  channels = c.channels_x if direction == "xy" else c.channels_y
  img = Image.open(path).convert("L" if channels == 1 else "RGB")
  img = img.resize((c.resolution, c.resolution), Image.BILINEAR)
  arr = np.asarray(img, np.float32) / 127.5 - 1.0
  return arr[..., None] if channels == 1 else arr


def _write(path, out):
  if path.endswith(".npy"):
    np.save(path, out)
    return
  from PIL import Image
  img = out if out.ndim == 3 else out[0]
  arr = np.clip((img + 1.0) * 127.5, 0, 255).astype(np.uint8)
  Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


@common.exit_on_bad_input
def main(argv):
  del argv
  for name in ("workdir", "input", "output"):
    if not FLAGS[name].value:
      raise ConfigError(f"--{name}: required")
  for name in ("input", "output"):
    if not FLAGS[name].value.endswith((".npy", ".png")):
      raise ConfigError(f"--{name}: {FLAGS[name].value} must end in .npy or .png")
  if not os.path.isfile(FLAGS.input):
    raise ConfigError(f"--input: {FLAGS.input} does not exist")
  tr = inference.Translator.from_workdir(FLAGS.workdir)
  if getattr(tr.method.config, "networks", "conv") == "mlp":
    for name in ("input", "output"):
      if FLAGS[name].value.endswith(".png"):
        raise ConfigError(f"--{name}: this model translates points ([N, 2] arrays); use .npy")
  out = tr.translate(_read(FLAGS.input, tr, FLAGS.direction), FLAGS.direction, seed=FLAGS.seed)
  _write(FLAGS.output, out)
  print(FLAGS.output)


if __name__ == "__main__":
  app.run(main)
