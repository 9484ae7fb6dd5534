"""Pydantic request and response bodies of the HTTP APIs; they stop at the routes."""
