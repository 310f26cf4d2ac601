"""The messages a call's participants send, validated (pydantic, a union discriminated on
``type``; unknown fields refused), and the limits on them. See docs/call-protocol.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

#: Largest frame accepted (bytes of the UTF-8 text).
MAX_FRAME_BYTES = 64 * 1024
#: Most messages a connection may send in one second.
MAX_PER_SECOND = 50

#: A participant id: random per connection, never an account id.
Pid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16}$")]
#: SHA-256 of a public key, base64url without padding (32 bytes).
Commitment = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
#: A raw uncompressed P-256 point (65 bytes), base64url without padding.
PublicKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{87}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Description(_Strict):
    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: Annotated[str, StringConstraints(max_length=60_000)] = ""


class Candidate(_Strict):
    """An RTCIceCandidateInit (WebRTC's camelCase field names)."""

    candidate: Annotated[str, StringConstraints(max_length=2048)]
    sdpMid: Annotated[str, StringConstraints(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None
    usernameFragment: Annotated[str, StringConstraints(max_length=256)] | None = None


class SignalData(_Strict):
    """One SDP description or one ICE candidate (``candidate: null``: end of candidates)."""

    description: Description | None = None
    candidate: Candidate | None = None

    @model_validator(mode="after")
    def _one(self) -> SignalData:
        if len(self.model_fields_set) != 1:
            raise ValueError("a signal carries a description or a candidate")
        if "description" in self.model_fields_set and self.description is None:
            raise ValueError("a description cannot be null")
        return self


class Admit(_Strict):
    type: Literal["admit"]
    pid: Pid


class Signal(_Strict):
    type: Literal["signal"]
    to: Pid
    data: SignalData


class Key(_Strict):
    type: Literal["key"]
    commitment: Commitment | None = None
    public_key: PublicKey | None = None

    @model_validator(mode="after")
    def _one(self) -> Key:
        if (self.commitment is None) == (self.public_key is None):
            raise ValueError("a key message carries a commitment or a public key")
        return self


class Leave(_Strict):
    type: Literal["leave"]


class Ping(_Strict):
    type: Literal["ping"]


ClientMessage = Annotated[Admit | Signal | Key | Leave | Ping, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[Admit | Signal | Key | Leave | Ping] = TypeAdapter(ClientMessage)


def parse(text: str) -> Admit | Signal | Key | Leave | Ping:
    """The message in ``text``; :class:`pydantic.ValidationError` if it is not one."""
    return CLIENT_MESSAGE.validate_json(text)
