"""The bottom layer: settings (``BGCUT_*``), the API-key wrapper, atomic writes, the version.

Imports nothing else of the package.
"""
