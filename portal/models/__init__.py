"""Typed SQLAlchemy models, one module per domain."""

from portal.models.approval import Approval
from portal.models.audit import AuditEvent
from portal.models.case import Case, CaseMessage
from portal.models.contact_change import ContactChange
from portal.models.customer import Customer, Exposure
from portal.models.data_class import DATA_CLASSES, DataClass
from portal.models.guidance import GuidanceProgress
from portal.models.incident import Incident
from portal.models.job import Job
from portal.models.letter import LETTER_REASONS, Letter
from portal.models.notice import Notice
from portal.models.obligation import Obligation
from portal.models.outbox import OutboxMessage, OutboxTemplate
from portal.models.playbook import Finding, PlaybookTask, RemediationAction
from portal.models.protection import ActivationCode, Enrollment, ProtectionOffer
from portal.models.staff import KeptAct, RecoveryCode, SecurityKey, StaffMember, StaffSession
from portal.models.update import IncidentUpdate
from portal.models.verification import Challenge, KnownBrowser, LoginSession

__all__ = [
    "DATA_CLASSES",
    "LETTER_REASONS",
    "ActivationCode",
    "Approval",
    "AuditEvent",
    "Case",
    "CaseMessage",
    "Challenge",
    "ContactChange",
    "Customer",
    "DataClass",
    "Enrollment",
    "Exposure",
    "Finding",
    "GuidanceProgress",
    "Incident",
    "IncidentUpdate",
    "Job",
    "KeptAct",
    "KnownBrowser",
    "Letter",
    "LoginSession",
    "Notice",
    "Obligation",
    "OutboxMessage",
    "OutboxTemplate",
    "PlaybookTask",
    "ProtectionOffer",
    "RecoveryCode",
    "RemediationAction",
    "SecurityKey",
    "StaffMember",
    "StaffSession",
]
