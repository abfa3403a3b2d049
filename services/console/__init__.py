"""The console: a read model of the agency's topics, its web pages and ``status``."""
