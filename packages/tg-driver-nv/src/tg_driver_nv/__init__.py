"""NVIDIA devices for tg: NV (direct RM/UVM ioctls, hardware queues) and CUDA (driver API), with the NVRTC/ptxas compilers."""

__version__ = "0.1.0"
