"""The agenda (issue 11, teleconsultation, section 1): practitioners publish availability,
patients book, cancel and move consultations, practitioners see their day or week.

* :mod:`secretum.agenda.model` — plain objects and slot generation (clinic time zone, DST).
* :mod:`secretum.agenda.store` — tables and repository (double booking refused by the
  database: partial unique indexes on the active bookings).
* :mod:`secretum.agenda.service` — the use cases, each decided and audited once.
* :mod:`secretum.agenda.fhir` — Schedule, Slot, Appointment and Encounter as FHIR R4 shapes.
"""
