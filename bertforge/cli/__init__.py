"""Command-line interface; see ``bertforge --help``."""
