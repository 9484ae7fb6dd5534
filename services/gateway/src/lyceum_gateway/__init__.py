"""Lyceum's public REST gateway: the native `/v1` API and the DFM-Server compatibility mount, over gRPC
predictors, plus training jobs and the model registry, over the database and the job queue."""

__version__ = "0.1.0"
