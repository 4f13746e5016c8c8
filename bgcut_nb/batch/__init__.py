"""The client core shared by ``df.bgcut``, ``ddf.bgcut`` and ``bgcut-nb process``.

``options.py`` (``RunOptions``, normalised once), ``runner.py`` (the batch runner),
``reuse.py`` (``ReuseCache``), ``concurrency.py`` (adaptive in-flight limit), ``columns.py``
(result columns, image column inference). Uses the backends through the contract; ``notebook``
and ``cli`` build on it, nothing below imports it.
"""
