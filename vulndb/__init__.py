"""Offline vulnerability advisories: typed records, the parsers of their sources, and matching."""
