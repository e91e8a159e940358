"""Load a workdir's latest checkpoint and translate images X->Y or Y->X.

  from jdbw import inference
  tr = inference.Translator.from_workdir("workdirs/quickstart")
  y = tr.translate(x, "xy")                  # x: [N, 32, 32, c] or [32, 32, c] in [-1, 1]
  y = tr.translate(x, "xy", noise=z)         # z: [N, noise_dim] in [-1, 1]

No data pipeline is needed.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jdbw import checkpoint, methods, nets, storage
from jdbw import workdir as workdir_lib
from jdbw.errors import ConfigError


def read_config(workdir: str) -> dict:
  """The workdir's config.json record: method, model config and domain specs."""
  path = os.path.join(workdir, "config.json")
  if not storage.isfile(path):
    raise ConfigError(f"--workdir: {workdir} has no config.json (not a jdbw training workdir)")
  return workdir_lib.read_json(path, "--workdir")


def checkpoint_steps(workdir: str) -> list[int]:
  ckpt = checkpoint.Checkpointer(workdir)
  steps = ckpt.all_steps()
  ckpt.close()
  return steps


def load_run(workdir: str, step: int | None = None):
  """(method, state, config record) of a workdir's checkpoint (default: the newest one
  that restores)."""
  record = read_config(workdir)
  entry = methods.get(record["method"])
  method = entry.method(entry.config(**record["model"]))
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise ConfigError(f"--workdir: {workdir} has no checkpoint yet")
    if step is not None and step not in steps:
      raise ConfigError(f"--step: {workdir} has no checkpoint at step {step}; it has"
                        f" {steps}")
    abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
    if step is None:   # the newest that restores (a damaged one is skipped, with a warning)
      state, _, _ = ckpt.restore_latest(abstract)
    else:
      state, _ = ckpt.restore(abstract, step)
  finally:
    ckpt.close()
  return method, state, record


def parse_range(text: str) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in text.split(","))
  except ValueError:
    lo = hi = None
  if lo is None or not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
    raise ConfigError(f"--input_range: got {text!r}; expected LO,HI with LO < HI, e.g. 0,255")
  return lo, hi


def load_input(path: str, what: str = "--input"):
  """The decoded input (a numpy array for .npy, a PIL image for .png); ConfigError, one
  line, for an empty, unreadable or undecodable file (the translate CLI reads it before
  loading the model)."""
  if os.path.getsize(path) == 0:
    raise ConfigError(f"{what}: {path} is empty")
  if path.endswith(".npy"):
    with open(path, "rb") as f:
      if f.read(6) != b"\x93NUMPY":
        raise ConfigError(f"{what}: {path} is not a .npy file (no NumPy header; write it"
                          " with numpy.save)")
    try:
      arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise ConfigError(f"{what}: {path} is not a readable .npy file ({e})") from e
    if arr.size == 0:
      raise ConfigError(f"{what}: {path} holds no values (shape {arr.shape})")
    if arr.dtype.kind not in "fiub":
      raise ConfigError(f"{what}: {path} holds {arr.dtype} values; expected numbers")
    return arr
  from PIL import Image
  try:
    img = Image.open(path)
    img.load()
  except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
    raise ConfigError(f"{what}: {path} is not a decodable image ({type(e).__name__}: {e})") from e
  return img


def prepare_input(raw, path: str, *, channels: int, resolution: int, points: bool,
                  value_range: tuple[float, float] = (-1.0, 1.0),
                  what: str = "--input") -> np.ndarray:
  """Model-ready float32 inputs: PNGs converted and resized, .npy arrays scaled from
  `value_range` (images only); ConfigError, one line, for non-finite values or values
  outside the range."""
  if not isinstance(raw, np.ndarray):
    from PIL import Image
    img = raw.convert("L" if channels == 1 else "RGB")
    img = img.resize((resolution, resolution), Image.BILINEAR)
    arr = np.asarray(img, np.float32) / 127.5 - 1.0
    return arr[..., None] if channels == 1 else arr
  arr = raw.astype(np.float32)
  bad = int(np.size(arr) - np.isfinite(arr).sum())
  if bad:
    raise ConfigError(f"{what}: {path} holds {bad} non-finite values (NaN or inf) of"
                      f" {arr.size}")
  if points:
    return arr
  lo, hi = value_range
  found = (float(arr.min()), float(arr.max()))
  if found[0] < lo - 1e-3 * (hi - lo) or found[1] > hi + 1e-3 * (hi - lo):
    hint = (" (uint8 images: pass --input_range=0,255)" if raw.dtype == np.uint8 or found[1] > 2
            else "")
    raise ConfigError(f"{what}: {path} holds values in [{found[0]:.4g}, {found[1]:.4g}],"
                      f" outside --input_range=[{lo:g}, {hi:g}]{hint}")
  return np.clip((arr - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FITS = ("resize", "crop")


def image_paths(root: str) -> list[str]:
  """Every PNG/JPEG below `root`, recursively, as paths relative to it (sorted)."""
  out = []
  for d, _, files in os.walk(root):
    out += [os.path.relpath(os.path.join(d, f), root) for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(out)


def fit_image(img, channels: int, resolution: int, fit: str = "resize"):
  """(model input [r, r, c] in [-1, 1], the size (w, h) the output maps back to) of a PIL
  image: 'resize' squashes the whole image to a square (as the folder source's default),
  'crop' takes its centre square first (the folder source's `fit=crop`); the size is the
  image's own, or the square's."""
  from PIL import Image
  img = img.convert("L" if channels == 1 else "RGB")
  w, h = img.size
  if fit == "crop":
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    w = h = side
  arr = np.asarray(img.resize((resolution, resolution), Image.BILINEAR), np.float32)
  arr = arr / 127.5 - 1.0
  return (arr[..., None] if channels == 1 else arr), (w, h)


def to_image(out: np.ndarray, size=None):
  """A PIL image of one translation in [-1, 1], resized to `size` (w, h) if given."""
  from PIL import Image
  arr = np.clip((np.asarray(out) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
  img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
  return img if size is None or img.size == tuple(size) else img.resize(size, Image.BILINEAR)


class Translator:

  def __init__(self, method, state):
    self.method, self.state = method, state
    self.noise_dim = method.config.noise_dim
    self._translate = jax.jit(functools.partial(method.translate, state.params, state.spectral),
                              static_argnums=2)
    self._encode = (jax.jit(functools.partial(method.encode_noise, state.params, state.spectral),
                            static_argnums=1) if method.encodes_style else None)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Translator":
    method, state, _ = load_run(workdir, step)
    return cls(method, state)

  def translate(self, images, direction: str = "xy", noise=None, seed: int = 0,
                style=None) -> np.ndarray:
    """Translates float images in [-1, 1]; noise given, drawn U(-1, 1) from `seed`, or
    read off `style`: target-domain images in [-1, 1] (one for all inputs, or one each)
    whose style (MUNIT) or code (BiCycleGAN) the translations take."""
    if direction not in ("xy", "yx"):
      raise ConfigError(f"--direction: got {direction!r}; expected 'xy' or 'yx'")
    if direction not in self.method.directions:
      raise ConfigError(f"--direction: this model translates {', '.join(self.method.directions)}"
                        f" only, not {direction}")
    images = np.asarray(images, np.float32)
    shape = self.method.example_shape(direction[0])
    given = images.shape
    single = images.ndim == len(shape)
    if single:
      images = images[None]
    if images.shape[1:] != shape:
      raise ConfigError(f"--input: an array of shape {given}; expected one example of shape"
                        f" {shape} or a batch of shape (N, {', '.join(map(str, shape))})")
    if not np.isfinite(images).all():
      raise ConfigError("--input: inputs hold non-finite values (NaN or inf)")
    if not self.method.point_domains and (images.min() < -1.001 or images.max() > 1.001):
      raise ConfigError(f"--input: images hold values in [{images.min():.4g},"
                        f" {images.max():.4g}]; expected [-1, 1]")
    if style is not None:
      noise = self._style_noise(style, direction, len(images))
    if noise is None:
      noise = nets.sample_noise(jax.random.PRNGKey(seed), len(images), self.noise_dim)
    noise = jnp.asarray(noise, jnp.float32).reshape(len(images), self.noise_dim)
    out = np.asarray(self._translate(jnp.asarray(images), noise, direction))
    return out[0] if single else out

  def translate_files(self, paths, direction: str = "xy", *, fit: str = "resize",
                      keep_size: bool = False, samples: int = 1, seed: int = 0, style=None,
                      batch_size: int = 64, progress: bool = False):
    """Translates image files (PNG/JPEG, any size), `batch_size` at a time: returns
    ({path: [PIL image per sample]}, [undecodable paths, skipped]). Each input enters the
    model by `fit` ('resize' or 'crop', as the folder source); with `keep_size` each output
    is resized back to the input's size (with 'crop', the centre square's). Sample k of
    the input at position i takes the noise drawn from (seed, i, k), whatever the batch,
    or the code of `style` (target images in [-1, 1]). `progress`: a tqdm bar."""
    if fit not in FITS:
      raise ConfigError(f"--fit: got {fit!r}; expected one of {FITS}")
    if samples < 1 or batch_size < 1:
      raise ConfigError(f"--samples and --batch_size: expected >= 1; got {samples},"
                        f" {batch_size}")
    c = self.method.config
    channels = getattr(c, f"channels_{direction[0]}")
    from PIL import Image
    done, skipped = {}, []
    key = jax.random.PRNGKey(seed)
    bar = None
    if progress:
      from tqdm import tqdm
      bar = tqdm(total=len(paths), unit="image")
    for start in range(0, len(paths), batch_size):
      batch, sizes, names, index = [], [], [], []
      for i, path in enumerate(paths[start:start + batch_size], start):
        try:
          with Image.open(path) as img:
            img.load()
            arr, size = fit_image(img, channels, c.resolution, fit)
        except Exception:   # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
          skipped.append(path)
          continue
        batch.append(arr), sizes.append(size), names.append(path), index.append(i)
      for k in range(samples if batch else 0):
        noise = None
        if style is None:
          noise = jax.vmap(lambda i: jax.random.uniform(
              jax.random.fold_in(jax.random.fold_in(key, i), k), (self.noise_dim,), jnp.float32,
              -1.0, 1.0))(jnp.asarray(index))
        out = self.translate(np.stack(batch), direction, noise=noise, style=style)
        for name, o, size in zip(names, out, sizes):
          done.setdefault(name, []).append(to_image(o, size if keep_size else None))
      if bar is not None:
        bar.update(len(paths[start:start + batch_size]))
    if bar is not None:
      bar.close()
    return done, skipped

  def _style_noise(self, style, direction: str, n: int):
    if self._encode is None:
      raise ConfigError(f"--style_image: {self.method.name} reads no style off an image"
                        " (methods with a style or class encoder do: munit, bicyclegan,"
                        " balagan)")
    style = np.asarray(style, np.float32)
    shape = self.method.example_shape(direction[1])
    if style.ndim == len(shape):
      style = style[None]
    if style.shape[1:] != shape or len(style) not in (1, n):
      raise ConfigError(f"--style_image: an array of shape {style.shape}; expected one"
                        f" target image of shape {shape}, or {n} of them")
    if not np.isfinite(style).all() or style.min() < -1.001 or style.max() > 1.001:
      raise ConfigError("--style_image: expected finite values in [-1, 1]")
    noise = self._encode(jnp.asarray(style), direction)
    return jnp.broadcast_to(noise, (n, self.noise_dim))
