"""Background jobs for Acme Server 2.2.0."""
