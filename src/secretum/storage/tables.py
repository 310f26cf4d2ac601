"""Imports every module that declares tables, so that the metadata is complete."""

# Each context adds its table module here.
import secretum.audit.store  # noqa: F401
import secretum.keys.tables  # noqa: F401
import secretum.records.tables  # noqa: F401
