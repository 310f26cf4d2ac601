"""Teleconsultation calls: who may join an appointment's call and when (one door decision, one
audit entry), the re-check during a call, the signaling rooms (in process or across instances
through Redis) and the TURN relay's short-lived credentials. No web framework here: the
WebSocket endpoint (:mod:`secretum.web.routes.consult`) adapts a socket to
:class:`~secretum.consult.signaling.Peer`."""
