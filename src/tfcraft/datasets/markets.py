"""Datasets module `markets` (filled in by its application's work)."""

__all__: list[str] = []
