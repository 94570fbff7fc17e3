"""OSCAR's REST API (driver layer): :class:`OscarClient` and the pure parser of its paged job listing."""

from provisioner.oscar.client import DEFAULT_USER, MAX_PAGES, OscarClient, jobs_page

__all__ = ["DEFAULT_USER", "MAX_PAGES", "OscarClient", "jobs_page"]
