"""The exception tree of jobwire.

    JobwireError
     ├── ConfigError            a setting is missing or malformed (names the variable)
     ├── InvalidEvent           a record or request body breaks the event schema
     ├── LogError               the Kafka log could not be reached or written
     ├── BrokerError            the local dev broker could not be fetched, started or stopped
     ├── StoreError             the API's local store cannot be opened (data dir in use, unwritable)
     ├── SecretBoxError         a sealed secret cannot be opened (wrong key, moved between records)
     ├── TargetRefused          a webhook target the SSRF policy refuses
     ├── PayloadTooLarge        a task object or state snapshot over its size limit (dispatcher)
     ├── Problem                an HTTP error answered as problem+json (api)
     ├── LinkRefused            a portal link that is used, expired or forged (api)
     ├── ApiError               an HTTP error the client SDK received
     └── JobFailed, JobExpired  a worker handler's failure, a job a deadline already ended (SDK)

Lower layers' exceptions (aiokafka, aiohttp) are translated at the boundary with
``raise ... from exc`` so the core never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass


class JobwireError(Exception):
    """Base of every error jobwire raises on purpose."""


class ConfigError(JobwireError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason an event is invalid: a JSON pointer into the document and a message."""

    pointer: str
    message: str


class InvalidEvent(JobwireError):
    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.pointer or '/'}: {v.message}" for v in violations))


class LogError(JobwireError):
    """The event log could not be read or written; ``retriable`` says if trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class BrokerError(JobwireError):
    """The local development broker failed; the message carries the tail of its log."""


class StoreError(JobwireError):
    """The API's store on local disk cannot be used; the message says which path and why."""
