"""Tile rasterisation of projected 2D Gaussians: reference, Pallas kernel, API.

``rasterize(means2d, conics, colors, opacities, depths, radii, width=...,
height=...)`` blends ``N`` screen-space Gaussians front to back into an
``(H, W, C)`` image (:class:`RasterOutput`); ``implementation=`` picks the
dense reference (``reference.py``, the truth), the tiled XLA rasteriser
(``tiled.py``) or the Pallas kernel (``pallas.py``). ``binning.py`` sorts the
tile intersections into a fixed-capacity workspace (``bin_gaussians``, or its
steps ``expand_intersections``, ``sort_intersections``, ``tile_ranges``);
``testing.py`` makes random frames.
"""

from .api import RasterOutput, default_implementation, rasterize, rasterize_binned
from .binning import (
    BINNING_METHODS,
    TILE,
    Binning,
    Intersections,
    OverflowError,
    bin_gaussians,
    check_overflow,
    count_intersections,
    depth_order,
    expand_intersections,
    expand_intersections_depth_first,
    sort_by_tile,
    sort_intersections,
    tile_grid,
    tile_ranges,
    tile_rects,
    total_intersections,
)
from .pallas import rasterize as rasterize_pallas
from .reference import rasterize as rasterize_reference
from .tiled import rasterize as rasterize_xla

__all__ = [
    "BINNING_METHODS",
    "Binning",
    "Intersections",
    "OverflowError",
    "RasterOutput",
    "TILE",
    "bin_gaussians",
    "check_overflow",
    "count_intersections",
    "default_implementation",
    "depth_order",
    "expand_intersections",
    "expand_intersections_depth_first",
    "rasterize",
    "rasterize_binned",
    "rasterize_pallas",
    "rasterize_reference",
    "rasterize_xla",
    "sort_by_tile",
    "sort_intersections",
    "tile_grid",
    "tile_ranges",
    "tile_rects",
    "total_intersections",
]
