"""PNG figures: curves and image grids, drawn with matplotlib's Agg backend.

Every helper writes a PNG (atomically, see ``jaxsuite.core.atomic``) and
closes its figure, so long runs do not leak memory, and returns the path
written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxsuite.core import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 120) -> str:
    """Saves a matplotlib figure as PNG at ``path`` and closes it."""
    plt = _pyplot()
    fig.tight_layout()
    with atomic.open_atomic(path, "wb") as f:
        fig.savefig(f, dpi=dpi, format="png")
    plt.close(fig)
    return path


def plot_curves(
    path: str,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
) -> str:
    """Line plot of named ``(x, y)`` series, one line each; writes a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in curves.items():
        ax.plot(
            np.asarray(x),
            np.asarray(y),
            label=name,
            marker="." if len(x) < 30 else None,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_bars(
    path: str,
    values: Mapping[str, float],
    *,
    ylabel: str,
    title: str = "",
    logy: bool = False,
) -> str:
    """Bar chart of named values; writes a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(values) + 2), 4))
    names = list(values)
    ax.bar(range(len(names)), [float(values[n]) for n in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def image_grid(
    path: str,
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    scale: float = 2.5,
) -> str:
    """Tiles images of shape (H, W, 3) or (H, W) in [0, 1] into one PNG."""
    plt = _pyplot()
    n = len(images)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows))
    axes = np.atleast_1d(axes).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        img = np.clip(np.asarray(images[i], dtype=np.float32), 0.0, 1.0)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize="small")
    return save_figure(fig, path)


def save_image(path: str, image: np.ndarray) -> str:
    """Writes one (H, W, 3) or (H, W) image in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    img = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    with atomic.open_atomic(path, "wb") as f:
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(f, format="PNG")
    return path
