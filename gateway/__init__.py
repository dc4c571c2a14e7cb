"""leasegate.gateway: HTTP for operators and for runtimes in any language.

``leasegate serve`` runs one ASGI application: the dead-letter console (pages and a JSON API)
and the runtime API (runs, tasks, inboxes, pushed results over SSE, artifacts). It sits above
the broker and the workers' configuration; nothing below imports it.
"""

from .app import create_app
from .errors import ApiError
from .settings import GatewaySettings
from .state import Gateway
from .tokens import Role, Token, TokenBook, TokensFileError

__all__ = ["ApiError", "Gateway", "GatewaySettings", "Role", "Token", "TokenBook",
           "TokensFileError", "create_app"]
