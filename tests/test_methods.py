"""The method registry, the shared config sections and the batch-weight component."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdbw import batch_weight, config, methods, nets, train
from jdbw.errors import ConfigError
from jdbw.methods import base, cyclegan, distancegan, jd, munit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def test_registry_builds_every_method_and_refuses_unknown_names():
  for name, entry in methods.REGISTRY.items():
    m = methods.build(name)
    assert isinstance(m, entry.method) and isinstance(m, base.Method)
    assert methods.name_of(m) == name == m.name
    assert type(methods.from_config(m.config)) is entry.method
  assert methods.get("JD").method is jd.JD        # names saved by earlier versions
  assert methods.get("DistanceGAN").method is not methods.get("CycleGAN").method
  with pytest.raises(ConfigError, match=r"--model: got 'unit'; expected one of"):
    methods.get("unit")
  with pytest.raises(ConfigError, match="unknown config field"):
    methods.build("munit", g_features=4)


def test_shared_sections_are_defined_once_with_per_method_defaults():
  shared = {f for s in config.SECTIONS for f in config.section_fields(s)}
  for entry in methods.REGISTRY.values():
    fields = {f.name for f in dataclasses.fields(entry.config)}
    assert shared <= fields
    assert issubclass(entry.config, config.MethodConfig)
  # A method may change a section's default, not its meaning.
  assert jd.JDConfig().weight_decay == 0.0 and munit.MUNITConfig().weight_decay == 1e-4
  assert jd.JDConfig().d_steps == 5 and munit.MUNITConfig().d_steps == 1


@pytest.mark.parametrize("cls,bad,flag", [
    (jd.JDConfig, dict(lr=0.0), "--lr"),
    (munit.MUNITConfig, dict(lr=-1.0), "--lr"),
    (munit.MUNITConfig, dict(batch_weight="one_sided"), "--batch_weight"),
    (jd.JDConfig, dict(bw_start=300, bw_full=200), "--bw_start/--bw_full"),
    (munit.MUNITConfig, dict(conv_impl="cudnn"), "--conv_impl"),
    (jd.JDConfig, dict(w_lr=-1e-3), "--w_lr"),
    (jd.JDConfig, dict(weighting="mean"), "--weighting"),
    (munit.MUNITConfig, dict(gen_dim=0), "--gen_dim"),
    (cyclegan.CycleGANConfig, dict(channels_x=3, identity_weight=0.5), "--identity_weight"),
    (cyclegan.CycleGANConfig, dict(batch_weight="one_sided"), "--batch_weight"),
    (cyclegan.CycleGANConfig, dict(lr_linear_decay=10, lr_decay_every=5),
     "--lr_linear_decay"),
    (distancegan.DistanceGANConfig, dict(distance="cosine"), "--distance"),
    (distancegan.DistanceGANConfig, dict(distance_batches=2), "--distance_batches"),
    (distancegan.DistanceGANConfig, dict(one_sided=True, batch_weight="two_sided"),
     "--batch_weight"),
    (distancegan.DistanceGANConfig, dict(resolution=128), "--resolution"),
    (jd.JDConfig, dict(lr=float("nan")), "--lr"),
    (munit.MUNITConfig, dict(lr=float("inf")), "--lr"),
    (jd.JDConfig, dict(gp_weight=float("nan")), "--gp_weight"),
    (cyclegan.CycleGANConfig, dict(cycle_weight=float("inf")), "--cycle_weight"),
    (jd.JDConfig, dict(b1=5.0), "--b1"),
    (munit.MUNITConfig, dict(b2=1.0), "--b2"),
])
def test_validation_names_the_flag(cls, bad, flag):
  with pytest.raises(ConfigError) as e:
    cls(**bad).validate()
  assert str(e.value).startswith(flag) and "\n" not in str(e.value)


def test_configs_saved_before_the_sections_still_load(tmp_path):
  with open(os.path.join(HERE, "data", "saved_configs_2026-12-01.json")) as f:
    saved = json.load(f)
  for name, record in saved.items():
    entry = methods.get(record["method"])
    cfg = entry.config(**record["model"]).validate()
    assert {k: getattr(cfg, k) for k in record["model"]} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in record["model"].items()}
    # The workdir check accepts the old record for the same run (new fields at defaults).
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(record))
    now = {**record, "model": dataclasses.asdict(cfg)}
    train.check_workdir_config(str(workdir), now, dataclasses.asdict(entry.config()))


def test_batch_weight_component_modes_and_networks():
  net = lambda: nets.WeightNet(features=2)
  two = batch_weight.BatchWeight.build("two_sided", net)
  assert sorted(two.networks) == ["W_x", "W_y"] and two.active
  assert sorted(batch_weight.BatchWeight.build("two_sided", net, scheme="concat").networks) == ["W"]
  assert sorted(batch_weight.BatchWeight.build("one_sided", net).networks) == ["W"]
  none = batch_weight.BatchWeight.build("none", net)
  assert none.networks == {} and not none.active
  x = jnp.zeros((4, 32, 32, 1))
  keys = iter(jax.random.split(jax.random.PRNGKey(0), 4))
  params, _ = two.init(keys, x, x)
  rng = np.random.default_rng(0)
  x, y = (jnp.asarray(rng.uniform(-1, 1, (6, 32, 32, 1)), jnp.float32) for _ in range(2))
  w_x, w_y = two.weights(params, x, y, x, y, jnp.asarray(1000), None)
  np.testing.assert_allclose([float(w_x.sum()), float(w_y.sum())], [1.0, 1.0], rtol=1e-6)
  assert float(jnp.std(w_x)) > 0   # random W: not uniform once the clip is wide
  u_x, u_y = none.weights({}, x, y, x, y, jnp.asarray(1000), None)
  np.testing.assert_allclose(np.asarray(u_x), 1 / 6)
  np.testing.assert_allclose(np.asarray(u_y), 1 / 6)
  assert float(two.squared_gap(jnp.asarray(2.0), jnp.asarray(-1.0))) == 5.0
  with pytest.raises(ValueError, match="unknown batch weight mode"):
    batch_weight.BatchWeight.build("both", net)


def test_every_setting_has_one_definition_with_help_and_a_flag():
  """Flags are generated from the config fields (`jdbw.config.setting`): every settable
  field of every registered method has help text, and the trainer's flags are exactly
  those fields (plus the run's own), each defaulting to None (the model's default)."""
  from absl import flags
  from experiments import common
  from jdbw import config as config_lib
  fv = flags.FlagValues()   # not the process's flags: other tests define theirs
  common.define_model_flags(fv)
  configs = [e.config for e in methods.REGISTRY.values()]
  settings = common.model_settings()
  assert settings and not set(settings) & common.DERIVED
  assert set(settings) == {n for n in fv}
  for name, defaults in settings.items():
    text, _ = config_lib.help_of(configs, name)
    assert text, name
    assert fv[name].default is None and text in fv[name].help
  assert "jd 5, munit 1" in fv["d_steps"].help
  assert fv["gan_w"].help.endswith("munit, balagan only)")
  assert set(fv["weighting"].parser.enum_values) == set(batch_weight.SCHEMES)


BAD_CLI = [
    (["--batch_size=0"], "error: --batch_size: got 0; expected >= 1"),
    (["--seed=-1"], "error: --seed: got -1; expected >= 0"),
    (["--b1=5"], "error: --b1: got 5.0; expected Adam's beta in [0, 1)"),
    (["--lr=nan"], "error: --lr: got nan; expected a finite number"),
    (["--lr=inf"], "error: --lr: got inf; expected a finite number"),
    (["--gp_weight=nan"], "error: --gp_weight: got nan; expected a finite number"),
    (["stray"], "error: 'stray': unexpected positional argument"),
    (["--flagfile={binary}"], "error: --flagfile: {binary} is not a text file of flags"),
]


@pytest.mark.parametrize("extra,expected", BAD_CLI)
def test_bad_inputs_are_one_line_and_exit_2_before_compiling(extra, expected, tmp_path):
  binary = tmp_path / "binary.flags"
  binary.write_bytes(bytes(range(128, 256)) * 4)
  cmd = [sys.executable, "-m", "experiments.mnist_srmnist",
         "--flagfile=experiments/configs/quickstart.flags", f"--workdir={tmp_path}/wd"]
  cmd += [a.format(binary=binary) for a in extra]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  last = out.stderr.strip().splitlines()[-1]
  assert out.returncode == 2 and last.startswith(expected.format(binary=binary)), out.stderr[-1500:]
  assert "Traceback" not in out.stderr and "step 1/" not in out.stderr
  assert not (tmp_path / "wd").exists()
