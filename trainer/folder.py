"""Image folders with raw text: the Wiki archive layout (Wiki, Web News).

Layout under ``root``::

    categories.list                class names, one a line; class ids are 1-based in this order
    trainset_txt_img_cat.list      rows  text_id <TAB> image_id <TAB> class
    testset_txt_img_cat.list       the same for the test items
    texts/<text_id>.txt            UTF-8 text, or
    texts/<text_id>.xml            Wiki's <document ...><text> ... </text></document>
    images/<category>/<image_id>.jpg

Protocol (Wiki's): the test list gives the queries; the training list is both
the retrieval database and the training set. Rows of the result are the kept
training items in list order, then the kept test items in list order
(:attr:`FolderTexts.split`).

Reading:

- **Lists**: blank lines are ignored and the last line may lack its newline;
  fields are split on tabs (on any whitespace in a line without a tab). A row
  without three fields, or whose class is not an integer in ``1..C``, is a
  :class:`~trainer.data.DataError` naming the file and the line.
- **Images** are decoded by content (PIL), never by extension: real releases hold
  PNGs and a BMP named ``.jpg``. Every mode (greyscale, palette, RGBA, CMYK) is
  converted to RGB the way torchvision's loader does (``convert("RGB")``; alpha
  is dropped, EXIF orientation is not applied). Only the row's class folder is
  searched: Web News has numeric ids that occur in two category folders, and the
  list's class names the folder. Each folder is listed once (``os.scandir``).
- **XML texts** are taken with a regular expression (the content of the first
  ``<text>`` element, entities decoded by :func:`html.unescape`): a third of
  Wiki's files are not well-formed XML (HTML entities such as ``&ndash;``, bare
  ``&``), so an XML parser would reject them. ``.txt`` is preferred where both
  exist. Texts are stripped of surrounding whitespace.

Decisions on imperfect trees:

- **Missing or unreadable items.** A listed item whose image or text is missing
  or cannot be read is left out, recorded in ``skipped`` and reported by ONE
  warning of the logger ``trainer.folder`` that counts them by reason and names
  the first few (list, line, path, reason). Every image is fully decoded once
  at load time, in a thread pool (PIL releases the GIL while decoding), so that
  a corrupt or truncated file is found here, not in the middle of training;
  ``check_images=False`` skips that for huge sets (only existence is checked).
  Web News lists 7 images that do not exist.
- **Stray whitespace in a file name.** A file whose stem, with surrounding
  whitespace stripped, equals the listed id (and with the expected extension)
  *is* the listed item: Web News has ``culture/22 .jpg`` for image 22. It is
  used, recorded in ``renamed`` and counted in an info log line. The exact name
  wins where both exist; two such candidates and no exact name leave the item
  out as ambiguous.
- **strict=True** means the tree must match the lists exactly: any left-out item
  and any renamed file is a :class:`~trainer.data.DataError` (listing how many
  and the first few) instead.

Errors: a missing root, list file, ``categories.list``, ``texts/`` or
``images/`` folder is a :class:`FileNotFoundError` saying what was expected; a
malformed list or category file, a class id out of range, or a list with no
item left is a :class:`~trainer.data.DataError`.

Wiki's raw archive here (``wiki/raw``) has the texts and lists but no images:
:func:`load_folder` raises FileNotFoundError there, pointing to
:func:`load_folder_texts`, which returns texts, labels and the split without
images. Its rows are in list order, which is ``wikiData.mat``'s ``I_tr`` then
``I_te`` order row for row (``list_rows`` keeps each row's position in its list
for re-alignment when an item was left out).

numpy and Pillow only (Pillow imported on first use); no torch.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

# ``from . import data`` (not ``from .data import ...``) so that trainer.data may
# import this module at its top without a circular-import failure.
from . import data as _data
from .images import ImageSource

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

CATEGORIES_FILE = "categories.list"
LIST_FILES = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
IMAGE_EXTS = (".jpg",)
TEXT_EXTS = (".txt", ".xml")  # in order of preference

#: How many left-out / renamed items a log line or an error names.
_SHOW = 5


# --------------------------------------------------------------------------- images


def decode_image(path: PathLike) -> np.ndarray:
    """Decode an image file by its content and return it as RGB.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8, C-contiguous and writable.

    Raises
    ------
    OSError
        The file is missing, not an image, or truncated / corrupt (PIL's
        errors: ``FileNotFoundError``, ``PIL.UnidentifiedImageError``, ...).
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # the full decode: a truncated file fails here, not lazily later
        if im.mode == "RGB":
            arr = np.array(im, dtype=np.uint8)
        else:
            if im.mode == "P" and "transparency" in im.info:
                # PIL warns converting such palettes straight to RGB; go through RGBA.
                rgb = im.convert("RGBA").convert("RGB")
            else:
                rgb = im.convert("RGB")
            arr = np.array(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - convert("RGB") guarantees it
        raise OSError(f"{path}: expected an RGB image after conversion, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _image_problem(path: str) -> Optional[str]:
    """None when ``path`` decodes, else why not."""
    try:
        decode_image(path)
    except MemoryError:
        raise
    except Exception as exc:  # PIL plugins raise many kinds on corrupt files
        return f"image unreadable ({type(exc).__name__}: {exc})"
    return None


class FileImages(ImageSource):
    """Images read from files, decoded by content with PIL (see :func:`decode_image`).

    Parameters
    ----------
    paths : sequence of str or path-like
        One file per image.

    Attributes
    ----------
    paths : list of str
        The files, as given. Holds no open file, so it pickles as a list of str.
    """

    def __init__(self, paths: Sequence[PathLike]) -> None:
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError("FileImages: expected a sequence of paths, got a single path; wrap it in a list")
        self.paths: List[str] = [os.fspath(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        """The images at ``indices`` as ``(H, W, 3)`` uint8 RGB arrays, in that order.

        Raises
        ------
        IndexError
            An index outside ``[0, len(self))``.
        trainer.data.DataError
            A file that can no longer be decoded (the path is in the message).
        """
        idx = self._check_indices(indices)
        out = []
        for i in idx:
            path = self.paths[i]
            try:
                out.append(decode_image(path))
            except MemoryError:
                raise
            except Exception as exc:
                raise _data.DataError(f"{path}: cannot decode image {i}: {type(exc).__name__}: {exc}") from exc
        return out

    def describe(self, i: int) -> str:
        return self.paths[i]

    def __repr__(self) -> str:
        return f"FileImages({len(self.paths)} files)"


# --------------------------------------------------------------------------- texts

_TEXT_RE = re.compile(r"<text\b[^>]*>(.*?)</text\s*>", re.S | re.I)
_CDATA_RE = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)


def extract_xml_text(document: str) -> str:
    """The content of the first ``<text>`` element of a Wiki XML document.

    A regular expression, not an XML parser: Wiki's files use HTML entities
    (``&ndash;``) and bare ``&`` that make them ill-formed. Entities are decoded
    with :func:`html.unescape` (CDATA sections are kept verbatim); the result is
    stripped of surrounding whitespace.

    Raises
    ------
    ValueError
        No ``<text> ... </text>`` element.
    """
    m = _TEXT_RE.search(document)
    if m is None:
        raise ValueError("expected a <text> ... </text> element, found none")
    parts = _CDATA_RE.split(m.group(1))  # odd indices: CDATA contents
    return "".join(p if i % 2 else html.unescape(p) for i, p in enumerate(parts)).strip()


def read_text(path: PathLike) -> str:
    """The text of ``texts/<id>.txt`` (UTF-8, a BOM allowed) or ``texts/<id>.xml``.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        Not UTF-8 (``UnicodeDecodeError``), or an XML file without ``<text>``.
    """
    p = os.fspath(path)
    with open(p, "rb") as f:
        raw = f.read()
    s = raw.decode("utf-8-sig")
    if p.lower().endswith(".xml"):
        return extract_xml_text(s)
    return s.strip()


# --------------------------------------------------------------------------- lists


@dataclasses.dataclass(frozen=True)
class ListRow:
    """One data row of a list file."""

    list: str  # "train" or "test"
    row: int  # 0-based position among the list's data rows
    line: int  # 1-based line number in the file
    text_id: str
    image_id: str
    class_id: int  # 1-based


def read_categories(path: PathLike) -> List[str]:
    """Class names from ``categories.list``, one a line, class id = 1-based position.

    Trailing blank lines are ignored; a blank line between names (it would
    shift every later class id) or a repeated name is a DataError.
    """
    p = Path(path)
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise _data.DataError(f"{p}: expected class names, one a line, got none")
    for i, name in enumerate(lines, start=1):
        if not name:
            raise _data.DataError(
                f"{p}, line {i}: expected a class name, got a blank line (class ids are line positions)"
            )
    dup = [n for n, c in Counter(lines).items() if c > 1]
    if dup:
        raise _data.DataError(f"{p}: expected distinct class names, got repeated {dup}")
    return lines


def read_list(path: PathLike, n_classes: int, which: str = "train") -> List[ListRow]:
    """The rows of a ``*_txt_img_cat.list`` file.

    Parameters
    ----------
    path : str or path-like
    n_classes : int
        Class ids must lie in ``1..n_classes``.
    which : str
        ``"train"`` or ``"test"``, stored in each row.

    Raises
    ------
    trainer.data.DataError
        A row without exactly three fields or with a bad class id, naming the
        file and the line.
    """
    p = Path(path)
    rows: List[ListRow] = []
    text = p.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if len(fields) != 3 or not all(fields):
            raise _data.DataError(
                f"{p}, line {lineno}: expected text_id<TAB>image_id<TAB>class, got {line.strip()!r}"
            )
        text_id, image_id, cls = fields
        try:
            class_id = int(cls)
        except ValueError:
            raise _data.DataError(f"{p}, line {lineno}: expected an integer class id, got {cls!r}") from None
        if not 1 <= class_id <= n_classes:
            raise _data.DataError(
                f"{p}, line {lineno}: expected a class id in 1..{n_classes} (the lines of {CATEGORIES_FILE}), "
                f"got {class_id}"
            )
        rows.append(ListRow(which, len(rows), lineno, text_id, image_id, class_id))
    return rows


class _DirIndex:
    """The files of one folder, listed once: exact names, and names whose stem
    carries stray surrounding whitespace (keyed by the stripped stem and extension)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: set = set()
        self.loose: Dict[Tuple[str, str], List[str]] = {}
        with os.scandir(path) as it:
            for entry in it:
                if not entry.is_file():
                    continue
                self.names.add(entry.name)
                stem, ext = os.path.splitext(entry.name.strip())
                key = (stem.strip(), ext)
                if key[0] + key[1] != entry.name:
                    self.loose.setdefault(key, []).append(entry.name)

    def find(self, item_id: str, exts: Sequence[str]) -> Tuple[Optional[str], bool, str]:
        """(file name or None, found under a stray-whitespace name, why not found)."""
        for ext in exts:
            if item_id + ext in self.names:
                return item_id + ext, False, ""
        for ext in exts:
            cands = self.loose.get((item_id, ext), [])
            if len(cands) == 1:
                return cands[0], True, ""
            if len(cands) > 1:
                return None, False, f"ambiguous: {sorted(cands)} all match {item_id + ext}"
        return None, False, "missing"


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True, eq=False)
class FolderTexts:
    """Texts, labels and the Wiki protocol's split of a folder set (no images).

    Attributes
    ----------
    root : Path
    texts : list of str
        Raw text per kept item.
    labels : np.ndarray
        ``(n, C)`` uint8 one-hot over the classes of ``categories.list``.
    class_names : list of str
        ``C`` names, class id ``k`` (1-based) is ``class_names[k - 1]``.
    text_ids, image_ids : list of str
        The ids of each kept row, as listed.
    n_train : int
        Rows ``[0, n_train)`` are the training list's kept items, the rest the
        test list's, each in list order.
    list_rows : np.ndarray
        ``(n,)`` int64: each kept row's position among its list's data rows
        (equal to ``arange`` per part when nothing was left out).
    skipped : list of dict
        One per left-out listed item: ``list`` ("train" or "test"), ``line``
        (1-based, in the list file), ``text_id``, ``image_id``, ``path`` (the
        file at fault), ``reason``.
    renamed : list of dict
        One per item found under a name with stray whitespace: ``list``,
        ``line``, ``text_id``, ``image_id``, ``kind`` ("image" or "text"),
        ``expected`` and ``path`` (the file used).
    """

    root: Path
    texts: List[str]
    labels: np.ndarray
    class_names: List[str]
    text_ids: List[str]
    image_ids: List[str]
    n_train: int
    list_rows: np.ndarray
    skipped: List[Dict[str, Any]]
    renamed: List[Dict[str, Any]]

    @property
    def n(self) -> int:
        """The number of kept items."""
        return len(self.texts)

    @property
    def n_test(self) -> int:
        return self.n - self.n_train

    @property
    def split(self) -> "_data.Split":
        """Wiki's protocol: the test rows are the queries, the training rows both
        the database and the training set."""
        train = np.arange(self.n_train, dtype=np.int64)
        return _data.Split(
            query=np.arange(self.n_train, self.n, dtype=np.int64), database=train, train=train.copy()
        )


@dataclasses.dataclass(frozen=True, eq=False)
class FolderData(FolderTexts):
    """:class:`FolderTexts` plus the images of the kept items.

    Attributes
    ----------
    images : FileImages
        One file per kept row, same rows as ``texts``.
    """

    images: FileImages


# --------------------------------------------------------------------------- loading


def _require(root: Path, with_images: bool) -> None:
    if not root.exists():
        raise FileNotFoundError(
            f"folder data: expected a directory holding {CATEGORIES_FILE}, {LIST_FILES['train']}, "
            f"{LIST_FILES['test']}, texts/{' and images/' if with_images else ''}, got no such directory: {root}"
        )
    if not root.is_dir():
        raise _data.DataError(f"folder data: expected a directory, got a file: {root}")
    missing = [n for n in (CATEGORIES_FILE, *LIST_FILES.values()) if not (root / n).is_file()]
    missing += [n + "/" for n in ("texts",) if not (root / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: expected the Wiki archive layout, missing {missing}")
    if with_images and not (root / "images").is_dir():
        raise FileNotFoundError(
            f"{root}: expected an images/ folder (images/<category>/<image_id>.jpg), got none; this tree "
            "has texts only (as Wiki's raw archive here): use load_folder_texts(root) for the texts, labels "
            "and split, with image features from elsewhere (wikiData.mat's I_tr/I_te follow the lists' order)"
        )


def _describe(items: List[Dict[str, Any]], what: str) -> str:
    shown = "; ".join(f"{d['list']} line {d['line']}: {d['path']} ({d[what]})" for d in items[:_SHOW])
    more = f"; and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return shown + more


def _reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0]


def _load(
    root: PathLike, *, with_images: bool, strict: bool, check_images: bool, workers: int
) -> Tuple[FolderTexts, List[str]]:
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    rootp = Path(os.path.abspath(os.fspath(root)))
    _require(rootp, with_images)
    class_names = read_categories(rootp / CATEGORIES_FILE)
    rows = [r for which in ("train", "test") for r in read_list(rootp / LIST_FILES[which], len(class_names), which)]

    texts_dir = rootp / "texts"
    text_index = _DirIndex(texts_dir)
    image_index: Dict[int, Optional[_DirIndex]] = {}
    problems: List[Optional[Dict[str, Any]]] = [None] * len(rows)
    renamed: List[Dict[str, Any]] = []
    text_paths: List[Optional[str]] = [None] * len(rows)
    image_paths: List[Optional[str]] = [None] * len(rows)

    def note(i: int, path: Path, reason: str) -> None:
        if problems[i] is None:  # the first problem of an item names it
            r = rows[i]
            problems[i] = {"list": r.list, "line": r.line, "text_id": r.text_id, "image_id": r.image_id,
                           "path": str(path), "reason": reason}

    def rename(i: int, kind: str, expected: Path, used: Path) -> None:
        r = rows[i]
        renamed.append({"list": r.list, "line": r.line, "text_id": r.text_id, "image_id": r.image_id,
                        "kind": kind, "expected": str(expected), "path": str(used)})

    for i, r in enumerate(rows):
        name, loose, why = text_index.find(r.text_id, TEXT_EXTS)
        if name is None:
            note(i, texts_dir / f"{r.text_id}{{{','.join(TEXT_EXTS)}}}", f"text {why}")
        else:
            text_paths[i] = str(texts_dir / name)
            if loose:
                rename(i, "text", texts_dir / f"{r.text_id}{os.path.splitext(name.strip())[1]}", texts_dir / name)
        if not with_images:
            continue
        folder = rootp / "images" / class_names[r.class_id - 1]
        if r.class_id not in image_index:
            image_index[r.class_id] = _DirIndex(folder) if folder.is_dir() else None
        index = image_index[r.class_id]
        expected = folder / f"{r.image_id}{IMAGE_EXTS[0]}"
        if index is None:
            note(i, expected, f"image missing (no folder images/{class_names[r.class_id - 1]}/)")
            continue
        name, loose, why = index.find(r.image_id, IMAGE_EXTS)
        if name is None:
            note(i, expected, f"image {why}")
        else:
            image_paths[i] = str(folder / name)
            if loose:
                rename(i, "image", expected, folder / name)

    texts: List[str] = [""] * len(rows)
    for i, p in enumerate(text_paths):
        if p is None:
            continue
        try:
            texts[i] = read_text(p)
        except (OSError, ValueError) as exc:
            note(i, Path(p), f"text unreadable ({type(exc).__name__}: {exc})")

    if with_images and check_images:
        todo = [i for i, p in enumerate(image_paths) if p is not None and problems[i] is None]
        paths = [image_paths[i] for i in todo]
        if workers == 1 or len(paths) < 2:
            found = [_image_problem(p) for p in paths]  # type: ignore[arg-type]
        else:
            with ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="load_folder") as pool:
                found = list(pool.map(_image_problem, paths))
        for i, why in zip(todo, found):
            if why is not None:
                note(i, Path(image_paths[i] or ""), why)

    skipped = [p for p in problems if p is not None]
    # A renamed file of an item that is left out anyway is not reported as renamed.
    left_out = {(p["list"], p["line"]) for p in skipped}
    renamed = [d for d in renamed if (d["list"], d["line"]) not in left_out]

    if strict and (skipped or renamed):
        parts = []
        if skipped:
            counts = Counter(_reason_kind(d["reason"]) for d in skipped)
            parts.append(
                f"{len(skipped)} listed items missing or unreadable ({dict(counts)}): {_describe(skipped, 'reason')}"
            )
        if renamed:
            parts.append(
                f"{len(renamed)} files named with stray whitespace: "
                + "; ".join(
                    f"{d['list']} line {d['line']}: {d['path']!r} for {d['expected']!r}" for d in renamed[:_SHOW]
                )
            )
        raise _data.DataError(
            f"{rootp}: strict: expected the tree to match the lists exactly, got " + " and ".join(parts)
            + "; pass strict=False to leave such items out (and use renamed files)"
        )
    if skipped:
        counts = Counter(_reason_kind(d["reason"]) for d in skipped)
        log.warning(
            "%s: left out %d of %d listed items (%s): %s",
            rootp, len(skipped), len(rows), ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
            _describe(skipped, "reason"),
        )
    if renamed:
        log.info(
            "%s: %d listed files found under a name with stray whitespace, used as the listed item: %s",
            rootp, len(renamed),
            "; ".join(f"{d['list']} line {d['line']}: {d['path']!r}" for d in renamed[:_SHOW])
            + (f"; and {len(renamed) - _SHOW} more" if len(renamed) > _SHOW else ""),
        )

    keep = [i for i in range(len(rows)) if problems[i] is None]
    n_train = sum(1 for i in keep if rows[i].list == "train")
    for which, count in (("train", n_train), ("test", len(keep) - n_train)):
        if count == 0:
            listed = sum(1 for r in rows if r.list == which)
            raise _data.DataError(
                f"{rootp}: expected at least one {which} item, got none left of the {listed} rows of "
                f"{LIST_FILES[which]} (see the warning above for why they were left out)"
            )
    classes = np.arange(1, len(class_names) + 1)
    labels = _data.one_hot(np.array([rows[i].class_id for i in keep], dtype=np.int64), classes, where=str(rootp))
    result = FolderTexts(
        root=rootp,
        texts=[texts[i] for i in keep],
        labels=labels,
        class_names=class_names,
        text_ids=[rows[i].text_id for i in keep],
        image_ids=[rows[i].image_id for i in keep],
        n_train=n_train,
        list_rows=np.array([rows[i].row for i in keep], dtype=np.int64),
        skipped=skipped,
        renamed=renamed,
    )
    return result, [image_paths[i] or "" for i in keep]


def load_folder(
    root: PathLike, *, strict: bool = False, check_images: bool = True, workers: int = 4
) -> FolderData:
    """Load a folder set in the Wiki archive layout, images included.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``categories.list``, the two list files, ``texts/``
        and ``images/``.
    strict : bool
        Raise instead of leaving out missing / unreadable items or using files
        named with stray whitespace (see the module docstring).
    check_images : bool
        Decode every image once now, so that corrupt files are left out here;
        False checks only that the files exist (for huge sets).
    workers : int
        Threads decoding images for that check.

    Returns
    -------
    FolderData
        Kept training items first (list order), then kept test items.

    Raises
    ------
    FileNotFoundError
        The root, a list file, ``categories.list``, ``texts/`` or ``images/``
        is missing (without ``images/``, use :func:`load_folder_texts`).
    trainer.data.DataError
        A malformed list, a class id out of range, no training or no test item
        left; under ``strict``, any left-out or renamed item.
    """
    texts, paths = _load(root, with_images=True, strict=strict, check_images=check_images, workers=workers)
    fields = {f.name: getattr(texts, f.name) for f in dataclasses.fields(FolderTexts)}
    return FolderData(**fields, images=FileImages(paths))


def load_folder_texts(root: PathLike, *, strict: bool = False) -> FolderTexts:
    """Texts, labels and split of a folder set, without its images.

    For Wiki's raw archive (texts and lists, no images): pair the rows with
    ``wikiData.mat``'s image features, which follow the lists' order row for
    row (check ``skipped`` is empty, or use ``strict=True`` or ``list_rows``).
    Items are left out only for a missing or unreadable text; ``images/`` is
    not looked at.

    Parameters
    ----------
    root : str or path-like
    strict : bool
        Raise instead of leaving out items or using renamed text files.

    Returns
    -------
    FolderTexts
    """
    texts, _ = _load(root, with_images=False, strict=strict, check_images=False, workers=1)
    return texts


__all__ = [
    "FileImages",
    "FolderData",
    "FolderTexts",
    "ListRow",
    "decode_image",
    "extract_xml_text",
    "load_folder",
    "load_folder_texts",
    "read_categories",
    "read_list",
    "read_text",
]
