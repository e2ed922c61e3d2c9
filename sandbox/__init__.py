"""payscore-sandbox: a local WeChat Pay Pay Score API v3 sandbox (see README.md)."""

__version__ = "0.1.0"
