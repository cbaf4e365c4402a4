"""Bring the NV device up step by step on a real GPU and print what each step saw (the milestones of issue 6).

Run from the repository root on the GPU machine:
  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-driver-nv/src python packages/tg-driver-nv/scripts/nv_bringup.py
"""
import os, random, struct, subprocess, tempfile, time

ADD1_PTX = """.version 8.0
.target {arch}
.address_size 64
.visible .entry add1(.param .u64 out, .param .u64 inp, .param .u32 n) {{
  .reg .b32 %r<6>; .reg .b64 %rd<6>; .reg .f32 %f<3>; .reg .pred %p;
  mov.u32 %r1, %ctaid.x; mov.u32 %r2, %ntid.x; mov.u32 %r3, %tid.x;
  mad.lo.s32 %r4, %r1, %r2, %r3;
  ld.param.u32 %r5, [n];
  setp.ge.s32 %p, %r4, %r5;
  @%p bra DONE;
  ld.param.u64 %rd1, [out]; ld.param.u64 %rd2, [inp];
  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;
  mul.wide.s32 %rd3, %r4, 4;
  add.s64 %rd4, %rd2, %rd3; ld.global.f32 %f1, [%rd4];
  add.f32 %f2, %f1, 0f3F800000;
  add.s64 %rd5, %rd1, %rd3; st.global.f32 [%rd5], %f2;
DONE:
  ret;
}}
"""

def step(name):
  print(f"\n=== {name}", flush=True)

def main():
  from tg_driver_nv.nv import ioctl as I
  from tg_driver_nv.nv.rm import RMClient
  step("1. RM root client, driver version, GPUs")
  rm = RMClient(I.Kernel())
  print("driver version from the RM:", rm.version)
  for c in rm.card_info():
    print(f"card minor={c.minor_number} gpu_id={c.gpu_id:#x} pci={c.pci_info.bus:02x}:{c.pci_info.slot:02x} device_id={c.pci_info.device_id:#x}")
  from tg_driver_nv.nv.device import NVDevice
  from tg_driver_nv.nv.queue import NVComputeQueue, NVCopyQueue
  t = time.perf_counter()
  dev = NVDevice("NV")
  print(f"NVDevice opened in {time.perf_counter() - t:.2f}s: name={dev.name!r} arch={dev.arch} compute={dev.compute_class:#x} "
        f"gpfifo={dev.gpfifo_class:#x} copy={dev.copy_class:#x} usermode={dev.usermode_class:#x} uuid={bytes(dev.uuid.uuid).hex()}")
  step("2. host-visible video memory and host memory: CPU write/read")
  m = dev.mm.alloc(0x400000, cpu=True)
  from tg_driver_nv.nv.memory import view
  pat = bytes(random.getrandbits(8) for _ in range(4096))
  view(m)[:4096] = pat
  print("video memory (BAR1) at", hex(m.va), "readback ok:", bytes(view(m)[:4096]) == pat)
  step("3. GPFIFO compute + copy channels: semaphore release seen by the CPU")
  s = dev.new_signal(name="probe")
  NVComputeQueue("probe").signal(s, 42).submit(dev)
  s.wait(42, 5000)
  print("compute channel released 42; CPU read", s.value, "timestamp(us)", s.timestamp)
  NVCopyQueue("probe copy").signal(s, 43).submit(dev)
  s.wait(43, 5000)
  print("copy channel released 43; CPU read", s.value)
  step("4. copy engine: host -> video -> video -> host")
  n = 3 << 20
  data = os.urandom(n)
  a, b = dev.allocator.alloc(n), dev.allocator.alloc(n)
  dev.allocator._copyin(a, memoryview(data))
  dev.allocator._transfer(b, a, n)
  out = bytearray(n)
  dev.allocator._copyout(memoryview(out), b)
  print(f"{n} bytes round trip through the copy engine equal:", bytes(out) == data)
  step("5. PTX kernel through ptxas and a QMD")
  prg_src = ADD1_PTX.format(arch=dev.arch)
  lib = dev.compiler.compile(prg_src)
  from tg_driver_nv.nv.qmd import parse_cubin
  k = parse_cubin(lib, "add1")
  print(f"cubin: code {len(k.code)} bytes, regs {k.registers}, shared {k.shared}, local {k.local_per_thread}, "
        f"params at {k.param_base:#x} size {k.param_size}, cbufs {list(k.cbufs)}")
  with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
    f.write(lib)
    f.flush()
    r = subprocess.run(["cuobjdump", "-elf", f.name], capture_output=True, text=True)
    print("cuobjdump says:", " | ".join(ln.strip() for ln in r.stdout.splitlines() if "register count" in ln or "0x140210" in ln))
  prg = dev.runtime(dev, "add1", lib)
  cnt = 1000
  inp = dev.allocator.alloc(cnt * 4)
  outb = dev.allocator.alloc(cnt * 4)
  vals = [float(i) for i in range(cnt)]
  dev.allocator._copyin(inp, memoryview(struct.pack(f"<{cnt}f", *vals)))
  tm = prg(outb, inp, global_size=(8, 1, 1), local_size=(128, 1, 1), vals=(cnt,), wait=True)
  res = bytearray(cnt * 4)
  dev.allocator._copyout(memoryview(res), outb)
  got = struct.unpack(f"<{cnt}f", res)
  print(f"kernel time {tm}; out[:5]={got[:5]} all correct:", all(g == v + 1 for g, v in zip(got, vals)))
  step("6. round trip of a tiny launch + synchronize (wall clock, mean of 1000)")
  for _ in range(20): prg(outb, inp, global_size=(1, 1, 1), local_size=(32, 1, 1), vals=(cnt,))
  dev.synchronize()
  t = time.perf_counter()
  for _ in range(1000):
    prg(outb, inp, global_size=(1, 1, 1), local_size=(32, 1, 1), vals=(cnt,))
    dev.synchronize()
  print(f"NV: {(time.perf_counter() - t) * 1e3:.1f} us per launch+sync")
  from tg_driver_nv.cuda_device import CUDADevice
  cu = CUDADevice("CUDA", renderer=dev.renderer)
  cprg = cu.runtime(cu, "add1", cu.compiler.compile(prg_src))
  ci, co = cu.allocator.alloc(cnt * 4), cu.allocator.alloc(cnt * 4)
  for _ in range(20): cprg(co, ci, global_size=(1, 1, 1), local_size=(32, 1, 1), vals=(cnt,))
  cu.synchronize()
  t = time.perf_counter()
  for _ in range(1000):
    cprg(co, ci, global_size=(1, 1, 1), local_size=(32, 1, 1), vals=(cnt,))
    cu.synchronize()
  print(f"CUDA (same process, same GPU): {(time.perf_counter() - t) * 1e3:.1f} us per launch+sync")

if __name__ == "__main__":
  main()
