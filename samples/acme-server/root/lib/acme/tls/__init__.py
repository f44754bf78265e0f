"""TLS termination for Acme Server 2.2.0."""
