"""A self-hostable BackgroundCut v3 server over the local engine (extra ``server``)."""

from .app import create_app
from .service import ServerSettings

__all__ = ["create_app", "ServerSettings"]
