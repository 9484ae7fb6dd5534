"""Lyceum's public REST gateway: the native `/v1` API and the DFM-Server compatibility mount, over gRPC
predictors."""

__version__ = "0.1.0"
