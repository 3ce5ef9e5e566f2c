"""preview-slots: a fixed pool of preview environments ("slots") on one Linux host.

The library is usable without the CLI: load a :class:`~preview_slots.config.Config`, then call the
service functions in :mod:`preview_slots.service`. Heavy modules are imported lazily so that
``preview-slots --help`` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
