"""MATLAB ``.mat`` files of every version behind one reader, with images read lazily.

The field's MIRFLICKR-25K, NUS-WIDE and MS-COCO releases are ``.mat`` files of
two kinds:

- **v4 to v7** (``mirflickr25k-lall.mat``, ``-yall.mat``): read by
  :func:`scipy.io.loadmat`, which can only load a variable whole;
- **v7.3** (``mirflickr25k-iall.mat``, DCMH's ``FLICKR-25K.mat``,
  ``nus-wide-tc21-iall.mat``): HDF5 files behind a 512-byte MATLAB header,
  read here with h5py, so that the raw images (``IAll``, 3 GB for
  MIRFLICKR-25K, 30 GB for NUS-WIDE) are read a batch at a time, never whole.

Axis conventions
----------------
Everything here speaks **MATLAB's axis order**. MATLAB stores arrays column-major,
so h5py shows a v7.3 variable with its axes reversed: ``LAll`` (``N x C`` in
MATLAB) comes out of h5py as ``(C, N)``, and ``IAll`` (``H x W x 3 x N``) as
``(N, 3, W, H)``. :meth:`MatFile.shape` and :meth:`MatFile.array` undo that,
so that a v7.3 file and a v7 copy of it give the same shapes, values and dtypes
(those of :func:`scipy.io.loadmat`). :meth:`MatFile.images` turns an
``H x W x 3 x N`` uint8 variable into an :class:`~trainer.images.ImageSource`
whose ``read`` returns ``(H, W, 3)`` uint8 RGB arrays, image ``i`` being
MATLAB's ``IAll(:, :, :, i + 1)``.

Use::

    with open_mat("mirflickr25k-iall.mat") as mat:
        images = mat.images("IAll")      # lazy, picklable for DataLoader workers
    with open_mat("mirflickr25k-lall.mat") as mat:
        labels = mat.array("LAll")       # (N, C), as scipy gives it

h5py is needed for v7.3 files only (the ``train`` extra has it).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from trainer.data import DataError, require_file
from trainer.images import ArrayImages, ImageSource

PathLike = Union[str, "os.PathLike[str]"]

#: :meth:`MatFile.array` refuses a 4-D variable larger than this (bytes) and
#: points to :meth:`MatFile.images`: an image array is meant to be read lazily.
ARRAY_LIMIT_BYTES = 1 << 30

#: h5py's chunk cache per open image file: MATLAB writes v7.3 variables chunked
#: and compressed, and a chunk spanning several images should be inflated once
#: per batch rather than once per image.
_CHUNK_CACHE_BYTES = 32 << 20

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MATLAB_USERBLOCK = 512

#: MATLAB class -> the dtype scipy.io.loadmat returns for it (logical as uint8,
#: as scipy gives it).
_CLASS_DTYPES: Dict[str, np.dtype] = {
    "double": np.dtype(np.float64),
    "single": np.dtype(np.float32),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "logical": np.dtype(np.uint8),
}

_IMAGE_LAYOUT = "an H x W x 3 x N uint8 RGB image array (MATLAB order; h5py shows it as N x 3 x W x H)"


# --------------------------------------------------------------------------- helpers


def _import_h5py(path: Path) -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            f"reading {path}, a MATLAB v7.3 (HDF5) file, needs h5py: pip install h5py "
            f"(the train extra has it); the import failed with: {exc}"
        ) from exc
    return h5py


def _import_scipy_io(path: Path) -> Tuple[Any, Tuple[type, ...]]:
    """scipy.io and the exceptions its readers raise on a broken file."""
    try:
        import scipy.io as sio
        from scipy.io.matlab import MatReadError
    except ImportError as exc:  # pragma: no cover - scipy is a dependency of the train extra
        raise ImportError(f"reading {path}, a MATLAB v4-v7 file, needs scipy: pip install scipy ({exc})") from exc
    # What scipy raises on truncated or corrupt files (found by cutting files
    # short at every byte): no single type, and nothing that names the file.
    errors = (MatReadError, OSError, EOFError, ValueError, IndexError, TypeError, KeyError, struct.error, zlib.error)
    return sio, errors


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{nbytes:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        nbytes /= 1024
        if nbytes < 1024 or unit == "GiB":
            break
    return f"{nbytes:.1f} {unit}"


def _dims(shape: Sequence[int]) -> str:
    return " x ".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def _corrupt(path: Path, kind: str, exc: BaseException) -> DataError:
    return DataError(f"{path}: expected a readable MATLAB {kind} file, got one that is truncated or corrupt ({exc})")


def is_v73(path: PathLike) -> bool:
    """True if ``path`` is an HDF5-based MAT file (MATLAB v7.3).

    MATLAB writes a 512-byte header (a user block, in HDF5 terms) before the
    HDF5 data, so the HDF5 signature sits at offset 512; a plain HDF5 file has
    it at offset 0. Both count.

    Raises
    ------
    FileNotFoundError
        No such file.
    DataError
        ``path`` is a directory.
    """
    p = require_file(path, ".mat file")
    with open(p, "rb") as fh:
        head = fh.read(_MATLAB_USERBLOCK + len(_HDF5_SIGNATURE))
    sig = len(_HDF5_SIGNATURE)
    return head[:sig] == _HDF5_SIGNATURE or head[_MATLAB_USERBLOCK : _MATLAB_USERBLOCK + sig] == _HDF5_SIGNATURE


def open_mat(path: PathLike) -> "MatFile":
    """Open a MATLAB ``.mat`` file of any version (v4 to v7 with scipy, v7.3 with h5py).

    Nothing but the variable directory is read here. The result is a context
    manager; ``close()`` releases the HDF5 handle of a v7.3 file.

    Raises
    ------
    FileNotFoundError
        No such file.
    DataError
        A directory, a file that is no MAT file, or a truncated or corrupt one.
    ImportError
        A v7.3 file and no h5py.
    """
    p = require_file(path, ".mat file")
    if is_v73(p):
        return _MatV73(p)
    return _MatV7(p)


# --------------------------------------------------------------------------- the file


class MatFile:
    """The variables of one ``.mat`` file; made by :func:`open_mat`.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    version : str
        ``"v7.3"`` (HDF5, read lazily with h5py) or ``"v4-v7"`` (scipy).
    names : list of str
        The variables, without scipy's ``__header__``-style entries and
        without HDF5's internal ``#refs#`` / ``#subsystem#`` groups.

    Shapes and arrays are in MATLAB's axis order (``N x C`` for ``LAll``),
    whatever the version; see the module docstring.
    """

    path: Path
    version: str
    names: List[str]

    def __init__(self, path: Path, names: List[str]) -> None:
        self.path = path
        self.names = names

    # -- context manager

    def close(self) -> None:
        """Release the file (a no-op for v4-v7 files, which hold no handle)."""

    def __enter__(self) -> "MatFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MatFile({str(self.path)!r}, version={self.version!r}, names={self.names})"

    # -- the interface

    def shape(self, name: str) -> Tuple[int, ...]:
        """The shape of variable ``name`` in MATLAB's axis order (``(N, C)`` for
        ``LAll``), read from the file's directory without reading the data."""
        raise NotImplementedError

    def array(self, name: str, *, max_bytes: int = ARRAY_LIMIT_BYTES) -> Any:
        """Variable ``name``, whole, as numpy in MATLAB's axis order.

        A v7.3 variable equals what :func:`scipy.io.loadmat` gives for the same
        variable in a v7 file, element for element and dtype for dtype:
        ``double`` -> float64, ``single`` -> float32, integer classes as they
        are, ``logical`` -> uint8, ``char`` -> an array of row strings, sparse
        -> ``scipy.sparse.csc_matrix``. Arrays are returned as the file holds
        them (Fortran-ordered, as scipy returns them); ``np.ascontiguousarray``
        gives a C-ordered copy. (A v7 file written by MATLAB may store a
        ``double`` variable in a smaller integer type; scipy then returns that
        type, e.g. uint8 for MIRFLICKR-25K's ``LAll``.)

        Parameters
        ----------
        name : str
            The variable.
        max_bytes : int
            A 4-D variable larger than this is refused: images are read with
            :meth:`images`, a batch at a time.

        Raises
        ------
        DataError
            A missing variable (the message lists those present), a 4-D
            variable over ``max_bytes``, a struct or cell, or unreadable data.
        """
        raise NotImplementedError

    def images(self, name: str = "IAll") -> ImageSource:
        """A lazy :class:`~trainer.images.ImageSource` over an ``H x W x 3 x N``
        uint8 variable (MATLAB order).

        ``read(indices)`` returns ``(H, W, 3)`` uint8 C-contiguous RGB arrays,
        image ``i`` equal to ``array(name)[:, :, :, i]``, so a v7 and a v7.3
        copy give the same images. A v7.3 source reads only the images asked
        for and is picklable (DataLoader workers reopen the file). A v4-v7 file
        cannot be read in part: scipy loads the variable and the source wraps
        it in memory.

        Raises
        ------
        DataError
            A missing variable, or one that is not 4-D, whose third axis is not
            3 or whose class is not uint8 (the message says what it got).
        """
        raise NotImplementedError

    # -- shared checks

    def _require(self, name: str) -> None:
        if name not in self.names:
            raise DataError(f"{self.path}: expected a variable {name!r}, got only {sorted(self.names)}")

    def _check_size(self, name: str, shape: Tuple[int, ...], itemsize: int, max_bytes: int) -> None:
        if len(shape) != 4:
            return
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        if nbytes > max_bytes:
            raise DataError(
                f"{self.path}: {name} is a {_dims(shape)} array of {_size(nbytes)}; expected at most "
                f"{_size(max_bytes)} from array(): read images a batch at a time with "
                f"open_mat(path).images({name!r}), or pass max_bytes"
            )

    def _check_image_layout(self, name: str, shape: Tuple[int, ...], cls: str) -> None:
        if len(shape) != 4 or shape[2] != 3 or cls != "uint8":
            hint = ""
            if len(shape) == 4 and shape[3] == 3 and shape[2] != 3:
                hint = "; the last axis is 3: an N x H x W x 3 array written from Python? Permute it to H x W x 3 x N"
            raise DataError(
                f"{self.path}: {name}: expected {_IMAGE_LAYOUT}, got {_dims(shape)} {cls}{hint}"
            )


class _MatV7(MatFile):
    """A v4-v7 file, read with scipy; the directory comes from ``whosmat``."""

    version = "v4-v7"

    def __init__(self, path: Path) -> None:
        self._sio, errors = _import_scipy_io(path)
        self._errors = errors
        try:
            info = self._sio.whosmat(str(path))
        except NotImplementedError as exc:  # a v7.3 header without HDF5 data behind it
            raise DataError(
                f"{path}: expected a MATLAB .mat file, got a v7.3 header without HDF5 data "
                f"(truncated?): {exc}"
            ) from None
        except errors as exc:
            raise DataError(
                f"{path}: expected a MATLAB .mat file (v4 to v7.3), got one scipy cannot read "
                f"(not a MAT file, or truncated or corrupt): {exc}"
            ) from None
        self._info: Dict[str, Tuple[Tuple[int, ...], str]] = {
            n: (tuple(int(d) for d in s), c) for n, s, c in info
        }
        super().__init__(path, [n for n, _, _ in info])

    def shape(self, name: str) -> Tuple[int, ...]:
        self._require(name)
        return self._info[name][0]

    def _load(self, name: str) -> Any:
        self._require(name)
        try:
            return self._sio.loadmat(str(self.path), variable_names=[name])[name]
        except self._errors as exc:
            raise _corrupt(self.path, "v4-v7", exc) from None

    def array(self, name: str, *, max_bytes: int = ARRAY_LIMIT_BYTES) -> Any:
        self._require(name)
        shape, cls = self._info[name]
        self._check_size(name, shape, _CLASS_DTYPES.get(cls, np.dtype(np.float64)).itemsize, max_bytes)
        return self._load(name)

    def images(self, name: str = "IAll") -> ImageSource:
        self._require(name)
        shape, cls = self._info[name]
        self._check_image_layout(name, shape, cls)
        arr = self._load(name)
        if arr.dtype != np.uint8:  # pragma: no cover - a uint8 class is stored as uint8
            raise DataError(f"{self.path}: {name}: expected {_IMAGE_LAYOUT}, got {arr.dtype} pixels")
        # (H, W, 3, N) -> (N, H, W, 3), a view; ArrayImages copies one image at a time.
        return ArrayImages(np.moveaxis(arr, 3, 0), name=f"{self.path.name}:{name}")


class _MatV73(MatFile):
    """A v7.3 (HDF5) file, read with h5py; variables are the root's members."""

    version = "v7.3"

    def __init__(self, path: Path) -> None:
        h5py = _import_h5py(path)
        self._h5py = h5py
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise _corrupt(path, "v7.3 (HDF5)", exc) from None
        # '#refs#' holds the members of cells and structs, '#subsystem#' MATLAB's objects.
        super().__init__(path, [k for k in self._file if not k.startswith("#")])

    def close(self) -> None:
        self._file.close()

    def _node(self, name: str) -> Any:
        self._require(name)
        try:
            return self._file[name]
        except (OSError, KeyError, ValueError) as exc:
            raise _corrupt(self.path, "v7.3 (HDF5)", exc) from None

    @staticmethod
    def _class(node: Any) -> Optional[str]:
        cls = node.attrs.get("MATLAB_class")
        if cls is None:
            return None
        if isinstance(cls, np.ndarray):
            cls = cls.reshape(-1)[0]
        return cls.decode("ascii") if isinstance(cls, bytes) else str(cls)

    def _unsupported(self, name: str, cls: Optional[str]) -> DataError:
        return DataError(
            f"{self.path}: {name}: expected a numeric, logical, char or sparse array, "
            f"got a MATLAB {cls or 'HDF5 group'}"
        )

    def shape(self, name: str) -> Tuple[int, ...]:
        node = self._node(name)
        if isinstance(node, self._h5py.Group):
            if "MATLAB_sparse" in node.attrs:
                return (int(node.attrs["MATLAB_sparse"]), int(node["jc"].shape[0]) - 1)
            raise self._unsupported(name, self._class(node))
        if node.attrs.get("MATLAB_empty", 0):
            # An empty array is stored as its MATLAB dimensions.
            return tuple(int(d) for d in np.asarray(node[()]).reshape(-1))
        return tuple(int(d) for d in reversed(node.shape))

    def _read(self, node: Any) -> np.ndarray:
        try:
            return np.asarray(node[()])
        except OSError as exc:
            raise _corrupt(self.path, "v7.3 (HDF5)", exc) from None

    def array(self, name: str, *, max_bytes: int = ARRAY_LIMIT_BYTES) -> Any:
        node = self._node(name)
        cls = self._class(node)
        shape = self.shape(name)
        if isinstance(node, self._h5py.Group):  # sparse: MATLAB's compressed columns
            import scipy.sparse as sp

            jc = self._read(node["jc"]).astype(np.int64)
            dtype = _CLASS_DTYPES.get(cls or "double", np.dtype(np.float64))
            data = self._read(node["data"]).astype(dtype, copy=False) if "data" in node else np.zeros(0, dtype)
            ir = self._read(node["ir"]).astype(np.int64) if "ir" in node else np.zeros(0, np.int64)
            return sp.csc_matrix((data, ir, jc), shape=shape)
        if node.attrs.get("MATLAB_empty", 0):
            return np.zeros(shape, dtype=_CLASS_DTYPES.get(cls or "double", np.dtype(np.float64)), order="F")
        if cls is not None and cls not in _CLASS_DTYPES and cls != "char":
            raise self._unsupported(name, cls)
        itemsize = _CLASS_DTYPES[cls].itemsize if cls in _CLASS_DTYPES else node.dtype.itemsize
        self._check_size(name, shape, itemsize, max_bytes)
        raw = self._read(node)
        if raw.dtype.names and {"real", "imag"} <= set(raw.dtype.names):  # complex: a compound type
            raw = raw["real"] + 1j * raw["imag"]
        arr = raw.T  # column-major on disk: reversing the axes gives MATLAB's order
        if cls == "char":
            if arr.ndim != 2:
                raise DataError(f"{self.path}: {name}: expected a 2-D char array, got {_dims(arr.shape)}")
            # As scipy's chars_as_strings: one string per row.
            rows = ["".join(map(chr, row)) for row in arr.astype(np.uint32)]
            return np.array(rows, dtype=f"<U{arr.shape[1]}")
        if cls is not None and arr.dtype != _CLASS_DTYPES[cls]:
            arr = arr.astype(_CLASS_DTYPES[cls])
        return arr

    def images(self, name: str = "IAll") -> ImageSource:
        node = self._node(name)
        cls = self._class(node)
        if isinstance(node, self._h5py.Group):
            raise DataError(f"{self.path}: {name}: expected {_IMAGE_LAYOUT}, got a MATLAB {cls or 'HDF5 group'}")
        shape = self.shape(name)
        self._check_image_layout(name, shape, cls or str(node.dtype))
        if node.dtype != np.uint8:
            raise DataError(f"{self.path}: {name}: expected {_IMAGE_LAYOUT}, got {node.dtype} pixels")
        height, width, _, n = shape
        return H5Images(self.path, name, n=n, height=height, width=width)


# --------------------------------------------------------------------------- lazy images


class H5Images(ImageSource):
    """The images of an ``H x W x 3 x N`` uint8 variable of a v7.3 file, read lazily.

    h5py sees the variable as ``(N, 3, W, H)``; :meth:`read` reads the rows
    asked for in one selection (sorted and deduplicated, as h5py requires; a
    contiguous run as one slice), transposes each to ``(H, W, 3)`` and returns
    them in the order asked. Made by :meth:`MatFile.images`.

    The HDF5 handle is opened on first use and dropped when pickled, so each
    DataLoader worker opens its own; a handle inherited through ``fork`` is
    not used (HDF5 handles are not fork-safe): the child opens its own.
    """

    def __init__(self, path: PathLike, name: str, *, n: int, height: int, width: int) -> None:
        self.path = Path(path)
        self.name = name
        self.n = int(n)
        self.height = int(height)
        self.width = int(width)
        self._file: Any = None
        self._ds: Any = None
        self._pid: Optional[int] = None

    def __len__(self) -> int:
        return self.n

    def describe(self, i: int) -> str:
        return f"{self.path.name}:{self.name}[{i}]"

    def __repr__(self) -> str:
        return f"H5Images({str(self.path)!r}, {self.name!r}, {self.height} x {self.width} x 3 x {self.n})"

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _ds=None, _pid=None)
        return state

    def close(self) -> None:
        """Release the HDF5 handle (reopened by the next :meth:`read`)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._ds = self._pid = None

    def _dataset(self) -> Any:
        if self._ds is not None and self._pid == os.getpid():
            return self._ds
        h5py = _import_h5py(self.path)
        try:
            f = h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except FileNotFoundError:
            raise FileNotFoundError(f".mat file: no such file: {self.path}") from None
        except OSError as exc:
            raise _corrupt(self.path, "v7.3 (HDF5)", exc) from None
        expected = (self.n, 3, self.width, self.height)
        ds = f.get(self.name)
        if not isinstance(ds, h5py.Dataset) or ds.shape != expected:
            got = "no such variable" if ds is None else f"h5py shape {getattr(ds, 'shape', 'a group')}"
            f.close()
            raise DataError(
                f"{self.path}: {self.name}: expected h5py shape {expected}, as when the source was made, "
                f"got {got}: the file changed"
            )
        self._file, self._ds, self._pid = f, ds, os.getpid()
        return ds

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        """The images at ``indices`` as ``(H, W, 3)`` uint8 RGB arrays, in that order."""
        idx = self._check_indices(indices)
        if idx.size == 0:
            return []
        rows, where = np.unique(idx, return_inverse=True)
        ds = self._dataset()
        try:
            if rows[-1] - rows[0] + 1 == rows.size:
                block = ds[int(rows[0]) : int(rows[-1]) + 1]
            else:
                block = ds[rows.tolist()]  # h5py's fancy indexing: increasing, unique
        except OSError as exc:
            raise DataError(
                f"{self.path}: {self.name}: expected readable images {rows[:5].tolist()}..., got an HDF5 error "
                f"(truncated or corrupt file?): {exc}"
            ) from None
        block = block.transpose(0, 3, 2, 1)  # (k, 3, W, H) -> (k, H, W, 3)
        return [np.ascontiguousarray(block[j]) for j in where.reshape(-1)]


__all__ = ["ARRAY_LIMIT_BYTES", "H5Images", "MatFile", "is_v73", "open_mat"]
