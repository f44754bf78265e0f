"""Authentication and sessions for Acme Server 2.2.0."""
