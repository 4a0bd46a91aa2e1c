"""Shared test code: fixture builders and loaders for unit, integration and interop tests."""
