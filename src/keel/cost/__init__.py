"""Price catalog and per-call cost accounting."""

from .pricing import PriceBook, Rate

__all__ = ["PriceBook", "Rate"]
