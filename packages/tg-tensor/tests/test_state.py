"""State dicts and weight files: get/load_state_dict, safetensors (against the `safetensors` package), torch.save checkpoints
(read without torch), GGUF files written by the `gguf` package, and clear errors for truncated or corrupt files."""
import json, struct
import numpy as np
import pytest
from tg_uop.dtype import dtypes
from tg_tensor import Tensor
from tg_tensor import nn
from tg_tensor.buffers import from_bytes, get_buffer
from tg_tensor.nn.state import (get_state_dict, get_parameters, load_state_dict, safe_load, safe_save, torch_load, gguf_load,
                                StateDictError, WeightFileError)

RNG = np.random.default_rng(0)

class Net:
  def __init__(self):
    self.l1, self.bn = nn.Linear(4, 3), nn.BatchNorm(3)
    self.blocks = [nn.Linear(3, 2), nn.LayerNorm(2)]

def test_state_dict_names_and_parameters():
  net = Net()
  sd = get_state_dict(net)
  assert {"l1.weight", "l1.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "blocks.0.weight", "blocks.1.bias"} <= set(sd)
  assert len(get_parameters(net)) == len(sd)

def test_load_state_dict_copies_and_reports_every_bad_key():
  a, b = Net(), Net()
  load_state_dict(b, get_state_dict(a))
  for k, v in get_state_dict(a).items(): np.testing.assert_array_equal(get_state_dict(b)[k].numpy(), v.numpy())
  bad = dict(get_state_dict(a))
  del bad["l1.bias"]
  bad["extra.weight"] = Tensor.ones(2)
  bad["blocks.0.weight"] = Tensor.ones(5, 5)
  with pytest.raises(StateDictError) as e: load_state_dict(b, bad)
  msg = str(e.value)
  assert "l1.bias" in msg and "extra.weight" in msg and "blocks.0.weight" in msg and "(5, 5)" in msg
  del bad["blocks.0.weight"]
  load_state_dict(b, bad, strict=False)  # missing and unexpected keys are skipped when not strict

def test_safetensors_round_trip_all_dtypes(tmp_path):
  ts = {"f32": Tensor(RNG.standard_normal((3, 4)).astype(np.float32)), "f16": Tensor(RNG.standard_normal(5).astype(np.float16)),
        "bf16": Tensor([1.5, -2.25, 3.0]).cast(dtypes.bfloat16), "fp8": Tensor(from_bytes(bytes([0x38, 0xb8, 0x7e]), dtypes.fp8e4m3)),
        "i64": Tensor(np.arange(6, dtype=np.int64).reshape(2, 3)), "u8": Tensor(np.array([1, 255], np.uint8)), "empty": Tensor.zeros(0, 3)}
  fn = tmp_path / "m.safetensors"
  safe_save(ts, fn, metadata={"format": "tg"})
  back = safe_load(fn)
  assert set(back) == set(ts) and back.metadata == {"format": "tg"}
  for k, t in ts.items():
    assert back[k].dtype == t.dtype and back[k].shape == t.shape
    if k == "fp8": continue  # the CPU renderers don't compute in fp8: its bytes are checked below
    np.testing.assert_array_equal(back[k].numpy(), t.numpy())
  assert bytes(get_buffer(back["fp8"].uop).as_buffer())[:3] == bytes([0x38, 0xb8, 0x7e])

def test_safetensors_matches_the_reference_package(tmp_path):
  st = pytest.importorskip("safetensors.numpy")
  arrs = {"a": RNG.standard_normal((2, 3)).astype(np.float32), "b": np.arange(5, dtype=np.int32)}
  st.save_file(arrs, str(tmp_path / "ref.safetensors"))
  ours = safe_load(tmp_path / "ref.safetensors")
  for k, v in arrs.items(): np.testing.assert_array_equal(ours[k].numpy(), v)
  safe_save({k: Tensor(v) for k, v in arrs.items()}, tmp_path / "ours.safetensors")
  for k, v in st.load_file(str(tmp_path / "ours.safetensors")).items(): np.testing.assert_array_equal(v, arrs[k])

def test_safe_load_is_lazy_and_feeds_load_state_dict(tmp_path):
  a, b = Net(), Net()
  safe_save(get_state_dict(a), tmp_path / "net.safetensors")
  f = safe_load(tmp_path / "net.safetensors")
  assert f.shape_of("l1.weight") == (3, 4)  # from the header alone
  load_state_dict(b, f)
  np.testing.assert_array_equal(b.l1.weight.numpy(), a.l1.weight.numpy())

def test_truncated_and_corrupt_safetensors_raise_clear_errors(tmp_path):
  fn = tmp_path / "m.safetensors"
  safe_save({"w": Tensor(np.ones((64,), np.float32))}, fn)
  raw = fn.read_bytes()
  (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
  with pytest.raises(WeightFileError, match="cut.safetensors.*truncated"): safe_load(tmp_path / "cut.safetensors")
  (tmp_path / "tiny.safetensors").write_bytes(raw[:5])
  with pytest.raises(WeightFileError, match="tiny.safetensors"): safe_load(tmp_path / "tiny.safetensors")
  (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 4) + b"{no}")
  with pytest.raises(WeightFileError, match="not valid JSON"): safe_load(tmp_path / "json.safetensors")
  hdr = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
  (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
  with pytest.raises(WeightFileError, match="needs 12 bytes"): safe_load(tmp_path / "bad.safetensors")

def test_torch_checkpoint_loads_without_torch(tmp_path):
  torch = pytest.importorskip("torch")
  sd = {"w": torch.randn(3, 4), "wt": torch.randn(4, 3).t(), "h": torch.randn(5).half(), "bf": torch.randn(4).bfloat16(),
        "i": torch.arange(6).reshape(2, 3), "view": torch.arange(10.0)[2:7], "nested": {"b": torch.ones(2, dtype=torch.bool)}, "n": 3}
  torch.save(sd, tmp_path / "ck.pt")
  out = torch_load(tmp_path / "ck.pt")
  assert out["n"] == 3 and out["bf"].dtype == dtypes.bfloat16
  for k in ("w", "wt", "h", "i", "view"): np.testing.assert_array_equal(out[k].numpy(), sd[k].numpy())
  np.testing.assert_array_equal(out["bf"].numpy(), sd["bf"].float().numpy())
  np.testing.assert_array_equal(out["nested"]["b"].numpy(), sd["nested"]["b"].numpy())

def test_torch_module_state_dict_loads_into_a_tg_model(tmp_path):
  torch = pytest.importorskip("torch")
  tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
  torch.save(tm.state_dict(), tmp_path / "m.pth")
  class Seq:
    def __init__(self): self.layers = [nn.Linear(4, 3), nn.BatchNorm(3)]
  ours = Seq()
  load_state_dict(ours, {f"layers.{k}": v for k, v in torch_load(tmp_path / "m.pth").items()})
  x = RNG.standard_normal((2, 4)).astype(np.float32)
  np.testing.assert_allclose(ours.layers[1](ours.layers[0](Tensor(x))).numpy(), tm.eval()(torch.tensor(x)).detach().numpy(), atol=1e-5)

def test_corrupt_torch_checkpoints_raise_clear_errors(tmp_path):
  torch = pytest.importorskip("torch")
  torch.save({"w": torch.randn(100)}, tmp_path / "ck.pt")
  raw = (tmp_path / "ck.pt").read_bytes()
  (tmp_path / "cut.pt").write_bytes(raw[:len(raw) // 2])
  with pytest.raises(WeightFileError, match="cut.pt"): torch_load(tmp_path / "cut.pt")
  (tmp_path / "junk.pt").write_bytes(b"hello world")
  with pytest.raises(WeightFileError, match="not a PyTorch zip checkpoint"): torch_load(tmp_path / "junk.pt")

def test_torch_checkpoint_with_code_is_refused(tmp_path):
  torch = pytest.importorskip("torch")
  torch.save({"f": print}, tmp_path / "evil.pt")
  with pytest.raises(WeightFileError, match="refused"): torch_load(tmp_path / "evil.pt")

def _write_gguf(path, tensors, quant):
  gguf = pytest.importorskip("gguf")
  w = gguf.GGUFWriter(str(path), "test")
  w.add_uint32("test.n", 7)
  w.add_string("test.s", "hello")
  for name, (arr, qt) in tensors.items():
    data = gguf.quants.quantize(arr, qt) if quant else arr
    w.add_tensor(name, data, raw_dtype=qt)
  w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

QTYPES = ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]

@pytest.mark.parametrize("qt", QTYPES)
def test_gguf_written_by_the_gguf_package_loads_and_dequantizes(tmp_path, qt):
  gguf = pytest.importorskip("gguf")
  q = gguf.GGMLQuantizationType[qt]
  arr = RNG.standard_normal((4, 512)).astype(np.float32)
  if qt == "F16": arr = arr.astype(np.float16)
  fn = tmp_path / "m.gguf"
  if qt.endswith("_K"):  # the gguf package has no quantizer for k-quants: random blocks with sane float16 scales
    bsz, bbytes = gguf.GGML_QUANT_SIZES[q]
    raw = RNG.integers(0, 256, (4, 512 // bsz * bbytes), dtype=np.uint8)
    blocks = raw.reshape(-1, bbytes)
    for at in ((208,) if qt == "Q6_K" else (0, 2)): blocks[:, at:at + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    _write_gguf(fn, {"t": (raw, q)}, quant=False)
    ref = gguf.quants.dequantize(raw, q)
  else:
    _write_gguf(fn, {"t": (arr, q)}, quant=qt not in ("F32", "F16"))
    ref = arr if qt in ("F32", "F16") else gguf.quants.dequantize(gguf.quants.quantize(arr, q), q)
  kv, ts = gguf_load(fn)
  assert kv["test.n"] == 7 and kv["test.s"] == "hello"
  assert ts["t"].shape == (4, 512)
  np.testing.assert_allclose(ts["t"].numpy(), ref, rtol=1e-6, atol=1e-6)

def test_truncated_and_corrupt_gguf_raise_clear_errors(tmp_path):
  gguf = pytest.importorskip("gguf")
  fn = tmp_path / "m.gguf"
  _write_gguf(fn, {"t": (np.ones((2, 64), np.float32), gguf.GGMLQuantizationType.F32)}, quant=False)
  raw = fn.read_bytes()
  (tmp_path / "cut.gguf").write_bytes(raw[:-100])
  with pytest.raises(WeightFileError, match="cut.gguf.*truncated"): gguf_load(tmp_path / "cut.gguf")
  (tmp_path / "head.gguf").write_bytes(raw[:30])
  with pytest.raises(WeightFileError, match="head.gguf.*truncated"): gguf_load(tmp_path / "head.gguf")
  (tmp_path / "magic.gguf").write_bytes(b"GGML" + raw[4:])
  with pytest.raises(WeightFileError, match="not a GGUF file"): gguf_load(tmp_path / "magic.gguf")

def test_frontends_are_registered_through_the_plugin_hook():
  from tg_tensor.plugin import tg_frontends
  specs = {s.name: s for s in tg_frontends()}
  assert specs["SAFETENSORS"].loader() is safe_load and specs["TORCH"].loader() is torch_load and specs["GGUF"].loader() is gguf_load
  assert ".gguf" in specs["GGUF"].extensions and ".pt" in specs["TORCH"].extensions
