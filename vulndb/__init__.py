"""Vulnerability data: advisory sources, exact version comparison and matching (issue 17)."""
