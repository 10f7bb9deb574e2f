"""Kept for code that imports ``jobwire.worker``; the worker SDK is ``jobwire.sdk.worker``."""

from jobwire.sdk.worker import JobContext, JobExpired, JobFailed, Result, Worker

__all__ = ["JobContext", "JobExpired", "JobFailed", "Result", "Worker"]
