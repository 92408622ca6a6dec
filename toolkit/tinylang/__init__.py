"""tinylang: small byte-level language models (MEGABYTE) for languages the big labs neglect.

    from tinylang.model import Megabyte, MegabyteConfig
"""

__version__ = "0.1.0"
