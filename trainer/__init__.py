"""hamsearch's trainer: cross-modal hashing methods that turn image and text
features into binary codes, evaluated through :mod:`hamsearch.metrics`.

- :mod:`trainer.data`: datasets (``.npz``, the field's ``.mat`` layouts, the
  embedded ``synthetic`` default) and the field's splits;
- :mod:`trainer.engine`: the one training loop (device, seeds, mini-batches,
  validation split for the epoch, best-epoch checkpoint, encoding);
- :mod:`trainer.methods`: the registry, one module per method (``dcmh``,
  ``cca_itq``);
- :mod:`trainer.cli`: ``python -m trainer train | reproduce | evaluate``.

Needs torch (the ``train`` extra); ``trainer.data`` alone needs numpy and scipy.
"""

__all__ = ["cli", "config", "data", "engine", "methods", "plots"]
