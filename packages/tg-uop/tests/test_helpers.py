"""Settings (getenv, ContextVar, Context, cache_dir) and the small pure helpers."""
import itertools, math, pathlib, random
from fractions import Fraction
import pytest
from tg_uop import helpers
from tg_uop.helpers import getenv, ContextVar, Context, DEBUG, BEAM, cache_dir, cdiv, cmod, prod, dedup, argsort, round_up, ceildiv
from tg_uop.helpers import partition, flatten, all_same, all_int

# ---- getenv ----
def test_getenv_converts_to_the_type_of_the_default(monkeypatch):
  monkeypatch.setenv("TG_TEST_GETENV_INT", "12")
  monkeypatch.setenv("TG_TEST_GETENV_FLOAT", "1.5")
  monkeypatch.setenv("TG_TEST_GETENV_STR", "hello")
  assert getenv("TG_TEST_GETENV_INT", 0) == 12 and isinstance(getenv("TG_TEST_GETENV_INT", 0), int)
  assert getenv("TG_TEST_GETENV_FLOAT", 0.0) == 1.5
  assert getenv("TG_TEST_GETENV_STR", "") == "hello"
  assert getenv("TG_TEST_GETENV_UNSET_XYZ", 7) == 7 and getenv("TG_TEST_GETENV_UNSET_XYZ2") == 0

def test_getenv_with_a_bad_value_names_the_variable_and_the_type(monkeypatch):
  monkeypatch.setenv("TG_TEST_GETENV_BAD", "abc")
  with pytest.raises(ValueError, match=r"TG_TEST_GETENV_BAD='abc' is not a valid int"): getenv("TG_TEST_GETENV_BAD", 0)

def test_getenv_with_a_bool_default_reads_zero_as_false(monkeypatch):
  # bool("0") is True in Python: a bool default must parse the usual spellings instead
  monkeypatch.setenv("TG_TEST_GETENV_BOOL0", "0")
  monkeypatch.setenv("TG_TEST_GETENV_BOOL1", "1")
  assert getenv("TG_TEST_GETENV_BOOL0", False) is False
  assert getenv("TG_TEST_GETENV_BOOL1", False) is True

# ---- ContextVar / Context ----
def test_context_var_reads_the_environment_once_and_compares_like_its_value(monkeypatch):
  monkeypatch.setenv("TG_TEST_CV_A", "3")
  v = ContextVar("TG_TEST_CV_A", 0)
  try:
    assert v.value == 3 and v >= 3 and v > 2 and v < 4 and v <= 3 and v == 3 and int(v) == 3 and bool(v)
    assert "TG_TEST_CV_A" in repr(v)
    with pytest.raises(RuntimeError, match="defined twice"): ContextVar("TG_TEST_CV_A", 0)
  finally: ContextVar._cache.pop("TG_TEST_CV_A", None)  # settings are process-global: leave none behind

def test_context_overrides_and_restores():
  old_debug, old_beam = DEBUG.value, BEAM.value
  with Context(DEBUG=4, BEAM=2):
    assert DEBUG.value == 4 and DEBUG >= 4 and BEAM.value == 2
    with Context(DEBUG=1):
      assert DEBUG.value == 1 and BEAM.value == 2
    assert DEBUG.value == 4
  assert (DEBUG.value, BEAM.value) == (old_debug, old_beam)

def test_context_restores_on_exception():
  old = DEBUG.value
  with pytest.raises(KeyError):
    with Context(DEBUG=7):
      assert DEBUG.value == 7
      raise KeyError("boom")
  assert DEBUG.value == old

def test_context_works_as_a_decorator():
  old = DEBUG.value
  @Context(DEBUG=5)
  def f(): return DEBUG.value
  assert f() == 5 and DEBUG.value == old

def test_unknown_setting_is_rejected_with_the_known_ones():
  with pytest.raises(ValueError, match=r"unknown setting\(s\) \['DEBUGG'\].*DEBUG"): Context(DEBUGG=1)

def test_cache_dir_honours_xdg_cache_home(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cache_dir() == tmp_path / "tg"
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert cache_dir() == pathlib.Path(tmp_path / "home" / ".cache" / "tg")

# ---- integer helpers ----
def _c_div_ref(a, b):
  """C99: the exact quotient truncated toward zero (via exact rationals, no float rounding)."""
  q = Fraction(a, b)
  return math.floor(q) if q >= 0 else math.ceil(q)

def test_cdiv_and_cmod_follow_c_semantics():
  rng = random.Random(0)
  vals = [0, 1, -1, 2, -2, 3, -3, 7, -7, 2**31 - 1, -2**31, 2**63 + 5, -(2**63 + 5)] + [rng.randint(-10**20, 10**20) for _ in range(50)]
  for a, b in itertools.product(vals, vals):
    if b == 0: continue
    q = _c_div_ref(a, b)
    assert cdiv(a, b) == q, (a, b)
    assert cmod(a, b) == a - q * b and abs(cmod(a, b)) < abs(b), (a, b)
    if cmod(a, b): assert (cmod(a, b) < 0) == (a < 0)
  assert (cdiv(-7, 2), cmod(-7, 2), cdiv(7, -2), cmod(7, -2), cdiv(-7, -2), cmod(-7, -2)) == (-3, -1, -3, 1, 3, -1)

def test_cdiv_and_cmod_by_zero_give_zero():
  assert cdiv(5, 0) == 0 and cmod(5, 0) == 0

def test_prod():
  assert prod([]) == 1 and prod([2, 3, 4]) == 24 and prod([0.5, 4]) == 2.0 and prod((), start=5) == 5
  assert prod(range(1, 21)) == math.factorial(20)

def test_dedup_keeps_first_occurrence_order():
  assert dedup([3, 1, 3, 2, 1]) == [3, 1, 2] and dedup([]) == []

def test_argsort_matches_a_stable_sort():
  np = pytest.importorskip("numpy")
  rng = random.Random(1)
  for _ in range(20):
    x = [rng.randint(0, 5) for _ in range(rng.randint(0, 30))]
    assert argsort(x) == np.argsort(np.array(x, dtype=np.int64), kind="stable").tolist()

def test_round_up_and_ceildiv():
  for n in range(0, 50):
    for amt in range(1, 9):
      assert round_up(n, amt) == math.ceil(n / amt) * amt and round_up(n, amt) % amt == 0 and n <= round_up(n, amt) < n + amt
      assert ceildiv(n, amt) == math.ceil(n / amt)
  assert ceildiv(-7, 2) == math.ceil(-7 / 2)

def test_partition_flatten_all_same_all_int():
  assert partition(range(10), lambda v: v % 3 == 0) == ([0, 3, 6, 9], [1, 2, 4, 5, 7, 8])
  assert partition([], bool) == ([], [])
  assert flatten([[1, 2], [], [3]]) == [1, 2, 3]
  assert all_same([2, 2, 2]) and not all_same([2, 3]) and all_same([])
  assert all_int([1, 2]) and not all_int([1, 2.0]) and all_int([])

def test_timing_prints_a_duration(capsys):
  with helpers.Timing("step: "): pass
  out = capsys.readouterr().out
  assert out.startswith("step: ") and out.rstrip().endswith("ms")
