"""The notebook layer: ``df.bgcut``/``s.bgcut``, ``ddf.bgcut``, previews and the review widget.

Built on :mod:`bgcut_nb.batch` (runner, cache, columns); nothing below imports it.
"""
