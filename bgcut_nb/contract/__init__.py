"""The API contract shared by every backend: variants, errors, pricing, the ``Backend`` base and
the wire constants (paths, headers, upload lifetime).

Uses only :mod:`bgcut_nb.core`.
"""
