"""Tile rasterisation of projected 2D Gaussians: reference, Pallas kernel, API."""
