"""Response and object caches for Acme Server 2.2.0."""
