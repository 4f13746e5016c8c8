"""The embedded engine: model files, U^2-Net inference, quality tiers, decoding and rendering.

Uses :mod:`bgcut_nb.contract` and :mod:`bgcut_nb.core`; knows nothing of HTTP or pandas.
"""
