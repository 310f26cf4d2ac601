"""Consent: versioned texts (:mod:`.texts`), append-only evidence (:mod:`.store`), the use
cases (:class:`.service.ConsentService`, :class:`.choices.PatientChoices`) and the FHIR R4
Consent view (:mod:`.fhir`).

This package's ``__init__`` imports nothing, so that the policy's fact loader can read the
consent store without pulling in the services.
"""
