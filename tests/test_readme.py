"""Every command in the README still runs: each `python -m experiments.*` line names only
flags its entry point defines, the training and study commands pass their own `--dry_run`
(every value checked, the resolved config printed, nothing read or compiled), the install
lines name files and extras that exist, and `.ci/run` runs the README's test command."""

import functools
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DRY_RUN = ("experiments.mnist_srmnist", "experiments.mass_shift_benchmark")


def readme_commands():
  """The shell commands of the README's ```bash blocks, continuation lines joined."""
  text = open(README).read()
  out = []
  for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    block = re.sub(r"\\\n\s*", " ", block)
    for line in block.splitlines():
      line = line.split(" #", 1)[0].strip()
      if line and not line.startswith("#"):
        out.append(line)
  return out


def python_commands():
  """[argv after `python -m`] of every README command (the part after `&&` too)."""
  out = []
  for line in readme_commands():
    for part in line.split("&&"):
      argv = shlex.split(part.strip())
      if argv[:2] == ["python", "-m"] and argv[2].startswith("experiments."):
        out.append(argv[2:])
  return out


@functools.lru_cache(maxsize=None)
def defined_flags(module):
  out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode in (0, 1), out.stderr[-1500:]   # absl exits 1 after --helpfull
  names = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", out.stdout + out.stderr, re.M))
  assert "flagfile" in names or len(names) > 5, (module, out.stdout[-500:])
  return names


def test_the_readme_has_its_commands():
  mods = [c[0] for c in python_commands()]
  assert mods.count("experiments.mnist_srmnist") >= 3, mods
  for m in ("experiments.evaluate", "experiments.translate", "experiments.export"):
    assert m in mods, mods
  assert len(open(README).read().splitlines()) <= 200, "the README is at most about 200 lines"


@pytest.mark.parametrize("argv", python_commands(), ids=lambda a: " ".join(a)[:80])
def test_readme_command_names_real_flags_and_dry_runs(argv):
  module, args = argv[0], argv[1:]
  flag_names = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
  unknown = {n for n in flag_names if n not in defined_flags(module)
             and not (n.startswith("no") and n[2:] in defined_flags(module))}
  assert not unknown, f"{module}: {sorted(unknown)} are not its flags"
  for a in args:   # flagfiles and config files the command names exist
    if a.startswith("--flagfile=") or a.startswith("--grid="):
      assert os.path.isfile(os.path.join(ROOT, a.split("=", 1)[1])), a
  if module in DRY_RUN:
    out = subprocess.run([sys.executable, "-m", module, *args, "--dry_run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if module == "experiments.mnist_srmnist":   # the config the run would record
      assert json.loads(out.stdout)["run"]["workdir"], out.stdout[-500:]


def test_install_lines_and_ci_run_the_readmes_commands():
  lines = readme_commands()
  test_cmd = [line for line in lines if "pytest tests" in line]
  assert len(test_cmd) == 1, lines
  assert test_cmd[0] in open(os.path.join(ROOT, ".ci", "run")).read()
  assert os.path.isfile(os.path.join(ROOT, "requirements.txt"))
  assert re.search(r"^test\s*=", open(os.path.join(ROOT, "setup.cfg")).read(), re.M)
  for line in lines:
    for part in line.split("&&"):
      argv = shlex.split(part.strip())
      assert argv[0] in ("pip", "python", "apt-get"), part
