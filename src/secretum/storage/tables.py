"""Imports every module that declares tables, so that the metadata is complete."""

# Each context adds its table module here (one line, kept sorted).
import secretum.agenda.store
import secretum.audit.browse
import secretum.audit.store
import secretum.consent.paper
import secretum.consent.tables
import secretum.identity.tables
import secretum.imaging.tables
import secretum.keys.tables
import secretum.notices.store
import secretum.policy.tables
import secretum.records.tables  # noqa: F401
