"""Shared plumbing for Lyceum services: settings, errors, logging, metrics and gRPC helpers."""
