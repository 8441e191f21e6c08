"""Figures of the blocking experiment (matplotlib Agg, PNG)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxsuite.core import figures


def _map(ax, field, lat, lon, title, cmap="viridis", symmetric=False):
    lon_c = np.concatenate([lon - 360.0 * (lon >= 180), []])
    order = np.argsort(lon_c)
    f = field[:, order]
    vmax = np.nanmax(np.abs(f)) if symmetric else None
    im = ax.pcolormesh(
        lon_c[order],
        lat,
        f,
        shading="nearest",
        cmap=cmap,
        vmin=-vmax if symmetric else None,
        vmax=vmax,
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("longitude (E)")
    ax.set_ylabel("latitude (N)")
    ax.axvline(-60, color="k", lw=0.5, ls="--")
    ax.axvline(0, color="k", lw=0.5, ls="--")
    return im


def blocking_frequency(
    path: str, panels: Mapping[str, tuple[np.ndarray, np.ndarray]], lon, ncols: int = 2
) -> str:
    """Frequency maps (% of days): title -> (freq (K, nlon), lat (K,))."""
    plt = figures._pyplot()
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.5 * ncols, 3.0 * nrows), squeeze=False
    )
    for ax, (name, (freq, lat)) in zip(axes.ravel(), panels.items()):
        im = _map(ax, 100 * freq, lat, lon, name)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return figures.save_figure(fig, path)


def attribution_maps(path: str, maps: Mapping[str, np.ndarray], lat, lon) -> str:
    """Signed mean attribution maps (diverging colours), one panel each."""
    plt = figures._pyplot()
    fig, axes = plt.subplots(len(maps), 1, figsize=(7, 2.6 * len(maps)), squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], maps.items()):
        im = _map(ax, m, lat, lon, name, cmap="RdBu_r", symmetric=True)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return figures.save_figure(fig, path)


def skill_vs_size(path: str, rows: list[dict], metric: str = "auc") -> str:
    """Metric (with CI bars) against target training size, one line per regime."""
    plt = figures._pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    regimes = sorted({r["regime"] for r in rows}, key=lambda s: s)
    for i, reg in enumerate(regimes):
        rs = sorted((r for r in rows if r["regime"] == reg), key=lambda r: r["n_train"])
        x = np.array([r["n_train"] for r in rs], float) * (1 + 0.03 * (i - 1.5))
        y = np.array([r[f"{metric}_mean"] for r in rs])
        lo = y - np.array([r[f"{metric}_lo"] for r in rs])
        hi = np.array([r[f"{metric}_hi"] for r in rs]) - y
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=reg)
    ax.set_xscale("log")
    ax.set_xlabel("target training onsets")
    ax.set_ylabel(
        {"auc": "ROC-AUC", "bss": "Brier skill score", "bacc": "balanced acc."}[metric]
    )
    ax.set_title("target configuration: skill vs training size (95% CI)", fontsize=9)
    ax.legend(fontsize=8)
    return figures.save_figure(fig, path)


def climatology(path: str, fields: Mapping[str, np.ndarray], lat, lon) -> str:
    """Panels of mean fields (e.g. model vs forcing climatology)."""
    plt = figures._pyplot()
    fig, axes = plt.subplots(
        1, len(fields), figsize=(5.5 * len(fields), 3.2), squeeze=False
    )
    for ax, (name, f) in zip(axes[0], fields.items()):
        im = _map(ax, f, lat, lon, name, cmap="RdBu_r", symmetric=True)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return figures.save_figure(fig, path)
