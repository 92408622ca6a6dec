"""``tinylang serve``: an OpenAI-compatible server with continuous batching.

    from tinylang.serve import ModelServer
    ModelServer.from_run("runs/fi-tiny", ServeOptions(port=8000)).serve_forever()
"""

from .engine import Engine, Finished, GenerationRequest
from .server import ModelServer, ServeOptions

__all__ = ["Engine", "Finished", "GenerationRequest", "ModelServer", "ServeOptions"]
