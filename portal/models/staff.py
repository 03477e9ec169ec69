"""Staff: support agents and admins, with the strongest sign-in in the portal."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.sealed import BlindIndex, Sealed, SealedField
from portal.validation import normalise_email

# Every role a staff member may hold (several at once). "admin" runs the console; it does not
# imply the others: legal approves what is said, communications writes the updates, security
# investigates, support_lead runs the desk (four eyes need two different people).
STAFF_ROLES = ("agent", "admin", "legal", "communications", "security", "support_lead")
# A staff session idle for 15 minutes has ended, and with it any act it kept.
KEPT_ACT_TTL = timedelta(minutes=15)


class StaffMember(Base):
    __tablename__ = "staff_member"
    __seal_prefix__ = "staff"
    __table_args__ = (CheckConstraint("role IN ('agent', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # Staff addresses are looked up by a keyed digest and kept sealed, like customers'.
    email_index: Mapped[bytes] = mapped_column(
        BlindIndex("email", "staff-email", normalise_email), unique=True
    )
    email_sealed: Mapped[bytes] = mapped_column(Sealed())
    # The console kind, kept for what read it before roles were several: "admin" when the member
    # holds admin, else "agent". What a member may do is decided by `roles`, never by this.
    role: Mapped[str] = mapped_column(String(16))
    # The roles held, space-separated in STAFF_ROLES order. A column, not a table: it is read on
    # every staff request with the member's row (no extra query), and adding it needs no rebuild
    # of staff_member (on SQLite a rebuild would cascade into sessions and keys).
    roles_text: Mapped[str] = mapped_column("roles", String(120), server_default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column()
    # Consecutive failed sign-ins; at 10 the account waits, 30 s doubling up to an hour.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The invitation's single-use nonce: spent when set-up starts, so the link works once.
    invite_nonce: Mapped[str | None] = mapped_column(String(32))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    email = SealedField("email_sealed")
    totp_secret = SealedField("totp_sealed")

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles this member holds, in STAFF_ROLES order."""
        held = set((self.roles_text or "").split())
        return tuple(r for r in STAFF_ROLES if r in held)

    @roles.setter
    def roles(self, names) -> None:
        names = set(names)
        unknown = names - set(STAFF_ROLES)
        if unknown or not names:
            raise ValueError("unknown or no roles")
        self.roles_text = " ".join(r for r in STAFF_ROLES if r in names)
        self.role = "admin" if "admin" in names else "agent"

    def has_role(self, name: str) -> bool:
        """Does this member hold the role? (admin implies no other.)"""
        return name in self.roles

    @property
    def ready(self) -> bool:
        """Set up completely: a password and a confirmed authenticator."""
        return bool(self.password_hash) and self.totp_enabled_at is not None


class RecoveryCode(Base):
    """One single-use recovery code: 120 random bits, stored only as a SHA-256 digest."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_member.id", ondelete="CASCADE"), index=True
    )
    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A staff session on the server; until the second factor is done it opens nothing."""

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_member.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None while half signed in (password only); set when the code is accepted.
    mfa_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Last full proof (password + code): sensitive acts need it within 5 minutes.
    reauth_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    # The security-key challenges this session was given, kept here (never in the cookie) so
    # each works once, only for this session, and only for a few minutes: one to sign in or
    # prove it again, one to register a new key (a proof asked in the middle of registering
    # must not spend the registration's challenge).
    sign_challenge: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    sign_challenge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    register_challenge: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    register_challenge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    staff: Mapped[StaffMember] = relationship()


class SecurityKey(Base):
    """A staff member's security key (WebAuthn / FIDO2): the credential's public key, the
    signature counter it last reported, and the name its owner gave it."""

    __tablename__ = "security_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_member.id", ondelete="CASCADE"), index=True
    )
    # At most 1023 bytes (WebAuthn Level 3); a key may be registered to one account only.
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    # COSE public key: not a secret, only ever used to check signatures.
    public_key: Mapped[bytes] = mapped_column(LargeBinary(2048))
    # Unsigned 32-bit on the authenticator, hence 64 here.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class KeptAct(Base):
    """A staff POST kept while its sender proves who they are again (portal.web.freshness):
    which route it was for, and its fields and files, sealed."""

    __tablename__ = "kept_act"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The id the "Confirm it is you" page posts back (random, never in an address).
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # Only the session that kept it can finish it; a session deleted takes its acts with it.
    session_id: Mapped[int] = mapped_column(
        ForeignKey("staff_session.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(String(500))
    # The form and files (a new contact, a reason, a customer file): personal data, so sealed
    # to this row like every other at rest, and covered by key rotation.
    payload_sealed: Mapped[bytes] = mapped_column(Sealed())
    payload = SealedField("payload_sealed", kind="json")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
