"""Raw datasets as arrays: features (n, d) float64 in their natural units, integer labels (n,)."""

from explorer.loaders.base import RawData

__all__ = ["RawData"]
