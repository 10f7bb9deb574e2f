"""Kept for code that imports ``jobwire.client``; the client SDK is ``jobwire.sdk.client``."""

from jobwire.sdk.client import ApiError, Client

__all__ = ["ApiError", "Client"]
