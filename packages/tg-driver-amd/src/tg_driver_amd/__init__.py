"""The AMD device for tg on MI300X (gfx942): KFD, PM4 compute, SDMA copy, AQL, multi-XCD, and the code-object compiler."""

__version__ = "0.1.0"
