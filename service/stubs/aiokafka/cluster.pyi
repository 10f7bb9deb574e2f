from typing import Any

class ClusterMetadata:
    def brokers(self) -> set[Any]: ...
