"""shoestring: microservices on a shoestring.

A service spec in YAML becomes a complete Python service for MySQL/MariaDB and shared hosting.
"""

__version__ = "0.1.0"
