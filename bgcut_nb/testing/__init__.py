"""Test rigs for the server: not part of the product, but shipped so benchmarks and drills run.

* :mod:`bgcut_nb.testing.server`: :class:`~bgcut_nb.testing.server.ServerThread` (the v3 server
  on 127.0.0.1 in a thread) and :func:`~bgcut_nb.testing.server.wait_until_serving`;
* :mod:`bgcut_nb.testing.faults`: :class:`~bgcut_nb.testing.faults.FaultProxy`, a loopback proxy
  that injects 429/503/resets/latency;
* :mod:`bgcut_nb.testing.simulator`: a stand-in for the real service (no segmentation work).

Nothing in the product imports this package, except ``bgcut-nb serve``'s drill flags.
"""
