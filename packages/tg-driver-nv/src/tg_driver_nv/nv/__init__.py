"""The NV device: NVIDIA GPUs driven through the open kernel module's RM and UVM ioctls, with GPFIFO hardware queues.

Layout: `ioctl.py` (hand-written structures, ioctl numbers, the `Kernel` seam), `rm.py` (the RM object tree), `memory.py`
(GPU virtual addresses and allocations), `queue.py` (GPFIFO channels, method encoding, signals), `qmd.py` (compute launch
descriptors and cubin parsing), `device.py` (`NVDevice`), `mock.py` (a fake kernel driver and GPU for tests without hardware).
"""
