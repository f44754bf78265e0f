"""Database access layer of Acme Server 2.2.0."""
