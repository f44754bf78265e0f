"""Small helpers used across Acme Server 2.2.0."""
