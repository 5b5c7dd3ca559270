"""Shared test plumbing: the local fake servers (ArcGIS REST, HTTP downloads, FTP) as fixtures."""

pytest_plugins = ["tests.servers.fixtures"]
