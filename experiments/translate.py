r"""Translates images with a trained workdir.

  python -m experiments.translate --workdir W --input in.png --output out.png --direction xy
  python -m experiments.translate --workdir W --input in.npy --output out.npy --direction yx

.npy: images [N, H, W, C] or [H, W, C] with values in --input_range (default [-1, 1];
0,255 for uint8). .png: one image (grey or RGB), resized to the model resolution; the
output PNG holds the translation. Bad input (empty, undecodable, NaN, values outside
the range, a missing output folder) is one line and exit 2, before the model is loaded
where it can be.
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
flags.DEFINE_string("style_image", None,
                    "A target-domain .png or .npy (in --input_range) whose style (munit) or"
                    " code (bicyclegan) the translation takes, instead of noise from --seed.")
flags.DEFINE_string("input_range", "-1,1",
                    "LO,HI: the value range of a .npy input's images, mapped linearly onto the"
                    " models' [-1, 1] (0,255 for uint8 images, 0,1 for [0, 1] floats). PNGs"
                    " are always scaled.")
FLAGS = flags.FLAGS


def _write(path, out):
  try:
    if path.endswith(".npy"):
      np.save(path, out)
      return
    from PIL import Image
    img = out if out.ndim == 3 else out[0]
    arr = np.clip((img + 1.0) * 127.5, 0, 255).astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
  except OSError as e:
    raise ConfigError(f"--output: cannot write {path} ({e.strerror or e})") from e


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
  folder = os.path.dirname(os.path.abspath(FLAGS.output))
  if not os.path.isdir(folder):
    raise ConfigError(f"--output: the folder {folder} does not exist")
  value_range = inference.parse_range(FLAGS.input_range)
  raw = inference.load_input(FLAGS.input)
  tr = inference.Translator.from_workdir(FLAGS.workdir)
  c = tr.method.config
  points = getattr(c, "networks", "conv") == "mlp"
  if points:
    for name in ("input", "output"):
      if FLAGS[name].value.endswith(".png"):
        raise ConfigError(f"--{name}: this model translates points ([N, 2] arrays); use .npy")
  channels = c.channels_x if FLAGS.direction == "xy" else c.channels_y
  images = inference.prepare_input(raw, FLAGS.input, channels=channels,
                                   resolution=c.resolution, points=points,
                                   value_range=value_range)
  style = None
  if FLAGS.style_image:
    if not os.path.isfile(FLAGS.style_image):
      raise ConfigError(f"--style_image: {FLAGS.style_image} does not exist")
    style = inference.prepare_input(
        inference.load_input(FLAGS.style_image, "--style_image"), FLAGS.style_image,
        channels=c.channels_y if FLAGS.direction == "xy" else c.channels_x,
        resolution=c.resolution, points=points, value_range=value_range,
        what="--style_image")
  out = tr.translate(images, FLAGS.direction, seed=FLAGS.seed, style=style)
  _write(FLAGS.output, out)
  print(FLAGS.output)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
