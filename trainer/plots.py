"""PR and top-N precision curves as PNG (matplotlib is optional).

Without matplotlib every function logs one warning and writes nothing; the
numbers behind the curves are in ``results.json`` either way.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

_warned = False

#: (label, x values, y values)
Series = Tuple[str, Sequence[float], Sequence[float]]


def _pyplot() -> Optional[Any]:
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        if not _warned:
            log.warning("matplotlib is not installed (%s): skipping the PNG curves; "
                        "pip install matplotlib (or the 'train' extra) to get them", exc)
            _warned = True
        return None
    return plt


def have_matplotlib() -> bool:
    return _pyplot() is not None


def _save(series: Sequence[Series], path: Path, title: str, xlabel: str, ylabel: str,
          xlog: bool = False, limits: bool = True) -> Optional[Path]:
    plt = _pyplot()
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=110)
    try:
        for label, x, y in series:
            ax.plot(list(x), list(y), marker=".", markersize=3, linewidth=1.2, label=label)
        if xlog:
            ax.set_xscale("log")
        if limits:
            ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def pr_plot(series: Sequence[Series], path: Path, title: str) -> Optional[Path]:
    """Precision (y) against recall (x), one line per series (Hamming radius 0..bits)."""
    return _save(series, path, title, "recall", "precision")


def topn_plot(series: Sequence[Series], path: Path, title: str) -> Optional[Path]:
    """Top-N precision (y) against N (x, log scale), one line per series."""
    return _save(series, path, title, "N (retrieved items)", "precision", xlog=True)
