"""The two implementations of the contract: ``LocalBackend`` (the engine in-process) and
``RemoteBackend`` (the v3 API over HTTP)."""
