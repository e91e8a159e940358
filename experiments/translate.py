r"""Translates images with a trained workdir.

  python -m experiments.translate --workdir W --input photo.jpg --output out.jpg --keep_size
  python -m experiments.translate --workdir W --input photos/ --output translated/ --samples 3
  python -m experiments.translate --workdir W --input in.npy --output out.npy --direction yx

Images: a PNG or JPEG file, or a folder of them (searched recursively; each output keeps
its input's relative path and format under the --output folder, with `_<k>` before the
extension for sample k when --samples > 1). Each enters the model by --fit (resize: the
whole image squashed to a square; crop: its centre square), as the folder source does;
--keep_size resizes each output back to its input's size (with crop, the square's).
Batched (64 images a call) with a progress bar; an undecodable file in a folder is skipped
and counted. .npy: images [N, H, W, C] or [H, W, C] with values in --input_range
(default [-1, 1]; 0,255 for uint8), written as .npy at the model's resolution. Bad input
(empty, undecodable, NaN, values outside the range, a missing output folder) is one line
and exit 2, before the model is loaded where it can be. A .npy input may also be
written as one image (its first translation).
"""

import os

import numpy as np
from absl import app, flags, logging

from experiments import common
from jdbw import inference
from jdbw.errors import ConfigError

common.define_generator_flags(
    "Output file (.png/.jpg/.jpeg/.npy), or a folder for a folder input.")
flags.DEFINE_string("input", None, "Input: a .png/.jpg/.jpeg file, a folder of them, or .npy.")
flags.DEFINE_boolean("keep_size", False, "Resize each output back to its input image's size.")
flags.DEFINE_enum("fit", "resize", list(inference.FITS),
                  "How an image enters the model: squashed whole (resize) or its centre square"
                  " (crop).")
flags.DEFINE_integer("samples", 1, "Translations per input (stochastic methods: other noise).")
flags.DEFINE_integer("seed", 0, "Seed of the noise z.")
flags.DEFINE_string("style_image", None,
                    "A target-domain .png or .npy (in --input_range) whose style (munit) or"
                    " code (bicyclegan) the translation takes, instead of noise from --seed.")
flags.DEFINE_string("input_range", "-1,1",
                    "LO,HI: the value range of a .npy input's images, mapped linearly onto the"
                    " models' [-1, 1] (0,255 for uint8 images, 0,1 for [0, 1] floats). PNGs"
                    " are always scaled.")
FLAGS = flags.FLAGS


IMAGES = inference.IMAGE_EXTENSIONS


def _save(image, path):
  try:
    image.save(path)
  except OSError as e:
    raise ConfigError(f"--output: cannot write {path} ({e.strerror or e})") from e


def _sample_path(path, k, samples):
  root, ext = os.path.splitext(path)
  return path if samples == 1 else f"{root}_{k}{ext}"


def _images(tr, direction, style):
  """Image files or a folder of them: translated, written, counted."""
  src, out = FLAGS.input, FLAGS.output
  folder = os.path.isdir(src)
  if folder:
    rel = inference.image_paths(src)
    if not rel:
      raise ConfigError(f"--input: {src} holds no .png/.jpg/.jpeg image")
    paths = [os.path.join(src, r) for r in rel]
  else:
    paths = [src]
  done, skipped = tr.translate_files(paths, direction, fit=FLAGS.fit, keep_size=FLAGS.keep_size,
                                     samples=FLAGS.samples, seed=FLAGS.seed, style=style,
                                     progress=folder)
  if not done:
    raise ConfigError(f"--input: none of the {len(paths)} image(s) could be decoded")
  written = 0
  for path, images in done.items():
    target = os.path.join(out, os.path.relpath(path, src)) if folder else out
    if folder:
      os.makedirs(os.path.dirname(target), exist_ok=True)
    if target.endswith(".npy"):
      np.save(target, np.stack([np.asarray(i, np.float32) / 127.5 - 1.0 for i in images]))
      written += 1
      continue
    for k, image in enumerate(images):
      _save(image, _sample_path(target, k, FLAGS.samples))
      written += 1
  if skipped:
    logging.warning("skipped %d undecodable file(s) of %d (first: %s)", len(skipped),
                    len(paths), skipped[0])
  print(f"{out}: {written} file(s)")


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
  if FLAGS.samples < 1:
    raise ConfigError(f"--samples: got {FLAGS.samples}; expected >= 1")
  source_folder = os.path.isdir(FLAGS.input)
  if not source_folder and not os.path.isfile(FLAGS.input):
    raise ConfigError(f"--input: {FLAGS.input} does not exist")
  if not source_folder and not FLAGS.input.lower().endswith((".npy",) + IMAGES):
    raise ConfigError(f"--input: {FLAGS.input} must be a folder or end in .npy, .png, .jpg"
                      " or .jpeg")
  if not source_folder and not FLAGS.output.lower().endswith((".npy",) + IMAGES):
    raise ConfigError(f"--output: {FLAGS.output} must end in .npy, .png, .jpg or .jpeg (a"
                      " folder only for a folder --input)")
  folder = os.path.dirname(os.path.abspath(FLAGS.output))
  if not os.path.isdir(folder):
    raise ConfigError(f"--output: the folder {folder} does not exist")
  if source_folder and os.path.isfile(FLAGS.output):
    raise ConfigError(f"--output: {FLAGS.output} is a file; a folder --input writes a folder")
  value_range = inference.parse_range(FLAGS.input_range)
  images_in = not FLAGS.input.endswith(".npy")
  raw = None if source_folder else inference.load_input(FLAGS.input)
  tr = inference.Translator.from_workdir(FLAGS.workdir)
  c = tr.method.config
  points = getattr(c, "networks", "conv") == "mlp"
  if points:
    for name in ("input", "output"):
      if not FLAGS[name].value.endswith(".npy"):
        raise ConfigError(f"--{name}: this model translates points ([N, 2] arrays); use .npy")
  channels = c.channels_x if FLAGS.direction == "xy" else c.channels_y
  style = None
  if FLAGS.style_image:
    if not os.path.isfile(FLAGS.style_image):
      raise ConfigError(f"--style_image: {FLAGS.style_image} does not exist")
    style = inference.prepare_input(
        inference.load_input(FLAGS.style_image, "--style_image"), FLAGS.style_image,
        channels=c.channels_y if FLAGS.direction == "xy" else c.channels_x,
        resolution=c.resolution, points=points, value_range=value_range,
        what="--style_image")
  if images_in:
    if source_folder:
      os.makedirs(FLAGS.output, exist_ok=True)
    _images(tr, FLAGS.direction, style)
    return
  images = inference.prepare_input(raw, FLAGS.input, channels=channels,
                                   resolution=c.resolution, points=points,
                                   value_range=value_range)
  out = tr.translate(images, FLAGS.direction, seed=FLAGS.seed, style=style)
  _write(FLAGS.output, out)
  print(FLAGS.output)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
