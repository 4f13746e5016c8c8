"""The embedded engine: model files, U^2-Net inference, quality tiers, decoding and rendering.

Uses :mod:`bgcut_nb.contract` and :mod:`bgcut_nb.core`; knows nothing of HTTP or pandas.

ONNX Runtime's own telemetry writes a device id under ``~/.cache/Microsoft`` when it is
imported; the engine writes only into its cache folder, so it is turned off here unless
``ORT_DISABLE_TELEMETRY`` is already set (``0`` keeps it).
"""

import os as _os

_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
