"""HTTP front end of Acme Server 2.2.0."""
