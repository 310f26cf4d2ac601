"""Radiology reports (issue 10, section 6): the radiologist's worklist, reports as FHIR
DiagnosticReports sealed in the records, signed with a WebAuthn assertion over their canonical
form, verified later (``secretum report verify``)."""
