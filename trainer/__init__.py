"""hamsearch's trainer: cross-modal hashing methods that turn images and
texts (or their features) into binary codes, evaluated through
:mod:`hamsearch.metrics`.

- :mod:`trainer.data`: datasets (``.npz``, the field's ``.mat`` releases, v7
  or v7.3, Wiki-layout image folders, the embedded ``synthetic`` default), the
  field's splits, and features from raw inputs (:func:`trainer.data.prepare`);
- :mod:`trainer.matfile`, :mod:`trainer.folder`, :mod:`trainer.text`,
  :mod:`trainer.images`: MATLAB files, image folders, vocabularies, lazily
  read images;
- :mod:`trainer.backbones`, :mod:`trainer.pixels`: image networks (CNN-F,
  ResNet, VGG, ViT) and images through them, frozen or end to end;
- :mod:`trainer.engine`: the one training loop (device, seeds, mini-batches,
  validation split for the epoch, best-epoch checkpoint);
- :mod:`trainer.methods`: the registry, one module per method;
- :mod:`trainer.encoder`: the trained model as a retrieval service loads it
  (:func:`load_encoder`);
- :mod:`trainer.cli`: ``python -m trainer train | reproduce | features | evaluate``.

Needs torch (the ``train`` extra); ``trainer.data`` alone needs numpy and scipy.
"""

from typing import Any

__all__ = ["cli", "config", "data", "encoder", "engine", "load_encoder", "methods", "plots"]


def __getattr__(name: str) -> Any:
    # trainer.load_encoder without importing torch on ``import trainer``
    if name == "load_encoder":
        from .encoder import load_encoder

        return load_encoder
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")

