"""Raw images read lazily: the one interface every image loader gives the trainer.

An :class:`ImageSource` is a sequence of RGB images that is read a batch at a
time, never whole (MIRFLICKR-25K's ``IAll`` is 3 GB, NUS-WIDE's 30 GB):

- ``len(source)``: the number of images;
- ``source.read(indices)``: a list of ``(H, W, 3)`` ``uint8`` C-contiguous RGB
  arrays, one per index, in the order asked (sizes may differ between images);
- ``source.describe(i)``: a short human name of image ``i`` for messages (a
  path, ``file.mat:IAll[i]``).

Sources are picklable, so that data-loading worker processes can read from
them: a source holding an open file handle drops it when pickled and opens it
again on first use.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


class ImageSource:
    """Base class of lazily read image collections; see the module docstring."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        """The images at ``indices`` as ``(H, W, 3)`` uint8 RGB arrays, in that order."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"image {i}"

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"image indices: expected values in [0, {n}), got {idx.min()}..{idx.max()}")
        return idx


class ArrayImages(ImageSource):
    """Images held in memory as one ``(N, H, W, 3)`` uint8 array (tests, small sets, v7 files)."""

    def __init__(self, array: np.ndarray, name: str = "images") -> None:
        arr = np.asarray(array)
        if arr.ndim != 4 or arr.shape[3] != 3:
            raise ValueError(f"{name}: expected an (N, H, W, 3) image array, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"{name}: expected uint8 pixels, got {arr.dtype}")
        self.array = arr
        self.name = name

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        idx = self._check_indices(indices)
        return [np.ascontiguousarray(self.array[i]) for i in idx]

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


__all__ = ["ArrayImages", "ImageSource"]
