"""satconv: adaptive-stride convolution of large GeoTIFFs, tile by tile."""

__version__ = "0.1.0"
