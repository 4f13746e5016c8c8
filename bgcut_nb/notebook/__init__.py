"""The notebook layer: the batch runner, the reuse cache, ``df.bgcut``/``s.bgcut`` and widgets.

Uses the backends through the contract; nothing below imports it.
"""
