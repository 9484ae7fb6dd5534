"""A client for Lyceum's REST API: `LyceumClient` (training jobs, the model registry, job event streams) and
the `lyceum` command line built on it."""

from lyceum_client.client import LyceumClient, LyceumClientError, ServerEvent

__all__ = ["LyceumClient", "LyceumClientError", "ServerEvent"]
__version__ = "0.1.0"
