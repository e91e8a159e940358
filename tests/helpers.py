"""Assertions shared by several test modules (imported as `helpers`: pytest puts tests/
on the path)."""


def one_line(excinfo, *needles):
  """The error of `pytest.raises` is one line and names every needle (flag, file, ...)."""
  msg = str(excinfo.value)
  assert "\n" not in msg
  for n in needles:
    assert n in msg, msg
