"""One door for every context: the access vocabulary (:mod:`.model`), the request context
(:mod:`.context`), the guard port (:mod:`.guard`), the door that decides once and audits once
(:mod:`.door`), and the one family of refusals (:mod:`.errors`).

Layering: contexts (records, consent, policy's use cases, rights, identity, imaging...) import
this package; it imports only the audit, crypto and storage layers. The real guard
(:class:`secretum.policy.guard.PolicyGuard`) is given to each door by the composition root.
"""
