"""The `tg.plugins` entry point of tg-tensor: the module tg imports to collect this package's hook implementations.

It is imported whenever plugins are listed or a device is first used, so it must stay cheap: heavy code loads lazily, from the
loaders in the specs its hooks return."""

# the plugin API version this package is written against; the core refuses a different major or a newer minor
TG_API_VERSION = (1, 0)
