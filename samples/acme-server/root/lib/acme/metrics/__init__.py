"""Metrics and health checks for Acme Server 2.2.0."""
