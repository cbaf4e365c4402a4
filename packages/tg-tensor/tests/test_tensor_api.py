"""Tensor construction, creation functions, movement ops, indexing, RNG and error messages (shapes and dtypes; values via numpy)."""
import math
import numpy as np
import pytest
torch = pytest.importorskip("torch")
from tg_uop.ops import Ops
from tg_tensor import Tensor, dtypes, Device

def test_construction_from_numpy_lists_scalars_and_bytes():
  assert Tensor(np.arange(6, dtype=np.int16).reshape(2, 3)).dtype == dtypes.int16
  t = Tensor([[1, 2], [3, 4]])
  assert (t.shape, t.dtype) == ((2, 2), dtypes.int32) and t.tolist() == [[1, 2], [3, 4]]
  assert Tensor([1, 2.5]).dtype == dtypes.float32 and Tensor([True, False]).dtype == dtypes.bool
  assert Tensor(3.5).shape == () and Tensor(3.5).item() == 3.5 and Tensor(7).item() == 7
  assert Tensor(b"\x01\x02\xff").tolist() == [1, 2, 255] and Tensor(b"\x01").dtype == dtypes.uint8
  assert Tensor([1, 2], dtype=dtypes.float16).dtype == dtypes.float16
  assert Tensor([1.5, 2], dtype="bfloat16").numpy().tolist() == [1.5, 2.0]
  assert Tensor([]).shape == (0,) and Tensor([]).numpy().shape == (0,)

def test_default_device_and_to():
  t = Tensor([1, 2, 3])
  assert t.device == Device.DEFAULT
  p = t.to("PYTHON")
  assert p.device == "PYTHON" and p.tolist() == [1, 2, 3]
  assert Tensor.zeros(2, device="python").device == "PYTHON" and Tensor.zeros(2, device="python").tolist() == [0.0, 0.0]

def test_compute_on_a_copied_tensor_runs_on_the_target_device():
  assert (Tensor([1, 2, 3]).to("PYTHON") * 2).tolist() == [2, 4, 6]

def test_construction_errors_say_what_to_pass():
  with pytest.raises(TypeError, match="can't make a Tensor from dict"): Tensor({"a": 1})
  with pytest.raises(ValueError, match="rectangular"): Tensor([[1, 2], [3]])
  with pytest.raises(ValueError, match="non-negative int"): Tensor.zeros(2, -1)
  with pytest.raises(TypeError, match="unknown dtype"): Tensor([1], dtype="float99")
  with pytest.raises(ValueError, match="exactly one element"): Tensor([1, 2]).item()

def test_creation_functions_match_torch():
  assert Tensor.zeros(2, 3).tolist() == torch.zeros(2, 3).tolist() and Tensor.ones((2,)).dtype == dtypes.float32
  assert Tensor.full((2, 2), 7).dtype == dtypes.int32 and Tensor.full((2, 2), 7).tolist() == [[7, 7], [7, 7]]
  assert Tensor.arange(5).tolist() == list(range(5)) and Tensor.arange(5).dtype == dtypes.int32
  assert Tensor.arange(10, 2, -3).tolist() == list(range(10, 2, -3))
  np.testing.assert_allclose(Tensor.arange(0, 1, 0.1).numpy(), torch.arange(0, 1, 0.1).numpy(), atol=1e-6)
  assert Tensor.arange(1000).numpy().tolist() == list(range(1000)) and Tensor.arange(0).shape == (0,)
  np.testing.assert_allclose(Tensor.linspace(-1, 2, 7).numpy(), torch.linspace(-1, 2, 7).numpy(), atol=1e-7)
  assert Tensor.eye(3, 4).tolist() == torch.eye(3, 4).tolist()
  x = Tensor([[1, 2]])
  assert x.zeros_like().tolist() == [[0, 0]] and x.ones_like().dtype == dtypes.int32 and x.full_like(3).tolist() == [[3, 3]]
  assert Tensor.empty(3, 2).shape == (3, 2)

def test_rng_is_reproducible_and_well_distributed():
  Tensor.manual_seed(42)
  a = Tensor.rand(10000).numpy()
  Tensor.manual_seed(42)
  assert (Tensor.rand(10000).numpy() == a).all()
  assert not (Tensor.rand(10000).numpy() == a).all()  # the counter moved on
  assert 0 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.02 and abs(a.std() - math.sqrt(1 / 12)) < 0.01
  n = Tensor.randn(20000).numpy()
  assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03 and np.isfinite(n).all()
  r = Tensor.randint(5000, low=-3, high=4).numpy()
  assert set(np.unique(r).tolist()) == set(range(-3, 4))
  u = Tensor.uniform(2000, low=2.0, high=3.0).numpy()
  assert 2 <= u.min() and u.max() < 3
  nm = Tensor.normal(20000, mean=5.0, std=2.0).numpy()
  assert abs(nm.mean() - 5) < 0.1 and abs(nm.std() - 2) < 0.1
  assert Tensor.rand(2, 3, dtype=dtypes.float16).dtype == dtypes.float16

def test_movement_ops_match_torch():
  a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  t, tt = Tensor(a), torch.tensor(a)
  cases = [(t.reshape(4, -1), tt.reshape(4, -1)), (t.permute(2, 0, 1), tt.permute(2, 0, 1)), (t.transpose(0, 2), tt.transpose(0, 2)),
           (t.flip(1), tt.flip(1)), (t.flip((0, 2)), tt.flip((0, 2))), (t[:, :1].expand(2, 5, 4), tt[:, :1].expand(2, 5, 4)),
           (t.flatten(1), tt.flatten(1)), (t.unsqueeze(-1).squeeze(), tt.unsqueeze(-1).squeeze()), (t.T, tt.permute(2, 1, 0)),
           (t.pad(((1, 0), None, (0, -2))), torch.nn.functional.pad(tt, (0, -2, 0, 0, 1, 0))), (t.pad((1, 2), value=-1.5),
           torch.nn.functional.pad(tt, (1, 2), value=-1.5)), (t.shrink(((0, 1), (1, 3), None)), tt[0:1, 1:3]),
           (t.repeat(2, 1, 3), tt.repeat(2, 1, 3)), (t.cat(t * 2, dim=1), torch.cat([tt, tt * 2], 1)),
           (Tensor.stack(t, t + 1, dim=-1), torch.stack([tt, tt + 1], -1)), (t.unflatten(2, (2, 2)), tt.unflatten(2, (2, 2)))]
  for got, want in cases:
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  for g, w in zip(t.split([1, 3], 2), tt.split([1, 3], 2)): np.testing.assert_array_equal(g.numpy(), w.numpy())
  for g, w in zip(t.chunk(2, 2), tt.chunk(2, 2)): np.testing.assert_array_equal(g.numpy(), w.numpy())
  assert Tensor([-0.0]).cat(Tensor([1.0])).numpy()[0] == 0 and np.signbit(Tensor([-0.0]).cat(Tensor([1.0])).numpy()[0])

def test_cat_promotes_dtypes_like_torch():
  assert Tensor([1, 2]).cat(Tensor([0.5])).dtype == dtypes.float32
  assert Tensor([1, 2]).cat(Tensor([0.5])).tolist() == [1.0, 2.0, 0.5]

@pytest.mark.parametrize("idx", [0, -1, (1, 2), (slice(None), 1), (slice(None, None, 2),), (slice(None, None, -1),), (Ellipsis, 1),
                                 (None, 0, Ellipsis, None), (slice(1, None, 3), slice(None, None, -2)), (slice(5, 0, -2),), (1, slice(-3, -1)),
                                 (slice(10, 20),), (slice(None), slice(None), slice(None, None, 3))])
def test_getitem_basic_matches_torch_and_numpy(idx):
  a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
  got, want = Tensor(a)[idx], a[idx]
  assert got.shape == want.shape
  np.testing.assert_array_equal(got.numpy(), want)

@pytest.mark.parametrize("make", [lambda: (np.array([2, 0, -1]),), lambda: (slice(None), np.array([[1, 0], [3, 3]])),
                                  lambda: (np.array([0, 2]), np.array([1, 3])), lambda: (np.array([0, 2]), slice(None), np.array([1, 4]))])
def test_getitem_with_integer_tensors_matches_numpy(make):
  a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
  idx = make()
  got = Tensor(a)[tuple(Tensor(i.astype(np.int32)) if isinstance(i, np.ndarray) else i for i in idx)]
  want = a[idx]
  assert got.shape == want.shape
  np.testing.assert_array_equal(got.numpy(), want)

def test_gather_matches_torch():
  a = np.arange(12, dtype=np.float32).reshape(3, 4)
  i = np.array([[0, 3], [2, 1], [1, 1]], np.int64)
  np.testing.assert_array_equal(Tensor(a).gather(1, Tensor(i.astype(np.int32))).numpy(), torch.tensor(a).gather(1, torch.tensor(i)).numpy())
  i0 = np.array([[2, 0, 1, 1]], np.int64)
  np.testing.assert_array_equal(Tensor(a).gather(0, Tensor(i0.astype(np.int32))).numpy(), torch.tensor(a).gather(0, torch.tensor(i0)).numpy())

def test_movement_errors_are_clear():
  t = Tensor.ones(2, 3)
  with pytest.raises(ValueError, match=r"can't reshape \(2, 3\) \(6 elements\) to \(4, 2\)"): t.reshape(4, 2)
  with pytest.raises(ValueError, match="only one dimension can be -1"): t.reshape(-1, -1)
  with pytest.raises(ValueError, match="not a permutation"): t.permute(0, 0)
  with pytest.raises(ValueError, match="only size-1 axes can be expanded"): t.expand(4, 3)
  with pytest.raises(IndexError, match="index 2 is out of bounds for axis 0 with size 2"): t[2]
  with pytest.raises(IndexError, match="too many indices"): t[0, 0, 0]
  with pytest.raises(IndexError, match="axis 2 is out of range"): t.sum(2)
  with pytest.raises(ValueError, match="can't broadcast"): t + Tensor.ones(4)
  with pytest.raises(ValueError, match="other axes"): t.cat(Tensor.ones(3, 3), dim=1)
  with pytest.raises(ValueError, match="sizes must match|the sizes must match"): t.bitcast(dtypes.int16)
  with pytest.raises(TypeError, match="negating a bool tensor"): -(t > 0)
  with pytest.raises(TypeError, match="needs bool or integer"): t & t

def test_graph_is_lazy_and_built_from_tensor_level_uops():
  a = Tensor.ones(4, 4)
  b = (a + 1).sum(1)
  assert b.uop.op is Ops.REDUCE_AXIS and b.shape == (4,)
  assert not any(u.op is Ops.BUFFER for u in b.uop.toposort())  # constants only: no memory until realize
  assert (a + 1).sum(1, keepdim=True).shape == (4, 1)
  r = b.realize()
  assert r is b and b._is_realized() and b.tolist() == [8.0] * 4

def test_contiguous_detach_assign():
  a = Tensor([1.0, 2.0]).realize()
  assert a.contiguous().uop.op is Ops.CONTIGUOUS and a.detach().tolist() == [1.0, 2.0]
  a.assign(Tensor([5.0, 6.0])).realize()
  assert a.tolist() == [5.0, 6.0]
  with pytest.raises(ValueError, match="same shape"): a.assign(Tensor([1.0]))

def test_import_of_tg_tensor_package_is_lazy():
  import subprocess, sys, os
  out = subprocess.run([sys.executable, "-c", "import sys, tg_tensor; print('numpy' in sys.modules)"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
  assert out.stdout.strip() == "False", out.stderr

def test_zero_dim_numpy_arrays_stay_zero_dim():
  import numpy as np
  from tg_tensor import Tensor
  t = Tensor(np.array(2.5, dtype=np.float32))
  assert t.shape == () and t.item() == 2.5 and t.numpy().shape == ()
