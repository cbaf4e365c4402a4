"""The USB interface for tg: a GPU behind an ASMedia ASM24xx USB-to-PCIe bridge, driven through libusb."""

__version__ = "0.1.0"
