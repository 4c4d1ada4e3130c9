"""What a tenant configures for notifications: channels, escalation policies, on-call
schedules and each user's preferences. Validated on every write; stored as JSON."""

from __future__ import annotations

import ssl
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.domain.alarms import Priority

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailChannel(_Strict):
    kind: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """starttls: upgrade on the submission port; tls: implicit TLS (465); none: plain (a local relay)."""
    username: str | None = None
    password: str | None = None
    sender: str = Field(min_length=3, max_length=320)
    recipients: list[str] = Field(default_factory=list, description="fixed recipients, besides users and on-call")
    verify_tls: bool = True
    tls_ca_pem: str | None = Field(
        None, max_length=65_536,
        description="PEM certificate(s) trusted instead of the system's CAs: a private CA or a lab relay's own",
    )  # fmt: skip
    timeout_s: float = Field(10.0, gt=0, le=60)

    @field_validator("tls_ca_pem")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        """Parsed on write, so a pasted key or a truncated certificate is a 422, not a failed alarm mail."""
        if v is None or not v.strip():
            return None
        try:
            ssl.create_default_context(cadata=v)
        except (ValueError, ssl.SSLError) as exc:
            raise ValueError(f"tls_ca_pem is not a PEM certificate: {exc}") from None
        return v

    @model_validator(mode="after")
    def _security(self) -> EmailChannel:
        if self.security == "none" and (self.username or self.password):
            raise ValueError("a login needs security starttls or tls: the password is never sent in clear")
        if self.tls_ca_pem is not None and self.security == "none":
            raise ValueError("tls_ca_pem needs security starttls or tls")
        if self.tls_ca_pem is not None and not self.verify_tls:
            raise ValueError("tls_ca_pem is what verification trusts: it makes no sense with verify_tls false")
        return self


class WebhookChannel(_Strict):
    kind: Literal["webhook"] = "webhook"
    url: str = Field(min_length=8, max_length=2000)
    secret: str = Field(min_length=16, max_length=200, description="HMAC-SHA256 key shared with the receiver")
    verify_tls: bool = True
    rate_per_min: int = Field(60, ge=1, le=6000, description="at most this many requests per minute to this URL")


Channel = Annotated[EmailChannel | WebhookChannel, Field(discriminator="kind")]


class ChannelConfig(_Strict):
    name: str = Field(pattern=NAME)
    channel: Channel
    enabled: bool = True


class Step(_Strict):
    after_s: float = Field(0, ge=0, le=7 * 86_400, description="after the alarm was raised, if still unacknowledged")
    targets: list[str] = Field(
        min_length=1,
        description="a channel name, 'user:<username>' or 'oncall:<schedule>' (people get email)",
    )
    priority: Priority | None = Field(None, description="announce the alarm at this priority from this step on")


class PolicyConfig(_Strict):
    """Escalation: step 0 goes at once; each later step only if nobody acknowledged meanwhile."""

    name: str = Field(pattern=NAME)
    steps: list[Step] = Field(min_length=1, max_length=10)
    email_channel: str | None = Field(None, description="the email channel people are reached through")
    min_priority: Priority = Priority.LOW

    @model_validator(mode="after")
    def _ordered(self) -> PolicyConfig:
        times = [s.after_s for s in self.steps]
        if times != sorted(times):
            raise ValueError("steps must come in order of after_s")
        people = any(t.startswith(("user:", "oncall:")) for s in self.steps for t in s.targets)
        if people and not self.email_channel:
            raise ValueError("a policy that notifies people needs an email_channel")
        return self


class Override(_Strict):
    user: str
    from_ts: float
    to_ts: float

    @model_validator(mode="after")
    def _span(self) -> Override:
        if self.to_ts <= self.from_ts:
            raise ValueError("an override needs from_ts < to_ts")
        return self


class ScheduleConfig(_Strict):
    """A weekly (or any period) rotation over `members`, starting at `start_ts`; overrides win."""

    name: str = Field(pattern=NAME)
    members: list[str] = Field(min_length=1)
    start_ts: float
    period_s: float = Field(7 * 86_400, gt=0)
    overrides: list[Override] = Field(default_factory=list)

    def on_call(self, ts: float) -> str:
        for o in self.overrides:
            if o.from_ts <= ts < o.to_ts:
                return o.user
        turn = int((ts - self.start_ts) // self.period_s)
        return self.members[turn % len(self.members)]


class Preferences(_Strict):
    """A user's own choices; the address defaults to the user's email."""

    enabled: bool = True
    email: str | None = Field(None, max_length=320)
    min_priority: Priority = Priority.LOW
