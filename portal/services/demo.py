"""The demo incident: realistic, covering every data class, in English and Spanish."""

from __future__ import annotations

import csv
import tempfile
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Incident
from portal.services import imports, notices, protection, staff
from portal.services.incidents import create_incident

SLUG = "acme-2026"
# The demo's admin: a reserved example address, invited like any staff member (no default
# password exists, in the demo either).
DEMO_ADMIN = "admin@example.com"
# The rest of the demo's response team: legal approves what goes out, communications writes
# the updates (four eyes need two people; the admin alone can do neither).
DEMO_LEGAL = "legal@example.com"
DEMO_COMMUNICATIONS = "communications@example.com"
DEMO_TEAM = ((DEMO_ADMIN, "admin"), (DEMO_LEGAL, "legal"), (DEMO_COMMUNICATIONS, "communications"))

# Reserved example domains and the 555-01xx fictional phone range: no real person is reached.
DEMO_CUSTOMERS = [
    (
        "C-1001",
        "Maria Garcia",
        "maria.garcia@example.com",
        "+14155550101",
        "es",
        "US-CA",
        "email_address;full_name;ssn:6789;date_of_birth",
    ),
    (
        "C-1002",
        "James Smith",
        "james.smith@example.com",
        "",
        "en",
        "US-NY",
        "email_address;password;username;security_questions",
    ),
    (
        "C-1003",
        "Aisha Khan",
        "aisha.khan@example.org",
        "+12125550102",
        "en",
        "US-NY",
        "full_name;payment_card:4242;postal_address;phone_number:0102",
    ),
    (
        "C-1004",
        "José Hernández",
        "jose.hernandez@example.net",
        "+13105550103",
        "es",
        "US-CA",
        "full_name;bank_account:3321;tax_id:1234",
    ),
    (
        "C-1005",
        "Wei Chen",
        "wei.chen@example.com",
        "",
        "en",
        "US-WA",
        "medical_records;health_insurance:7781;date_of_birth;full_name",
    ),
    (
        "C-1006",
        "Emma Johnson",
        "emma.johnson@example.com",
        "+15125550104",
        "en",
        "US-TX",
        "drivers_license:X912;postal_address;date_of_birth",
    ),
    (
        "C-1007",
        "Lukas Becker",
        "lukas.becker@example.de",
        "+4915550105",
        "en",
        "DE",
        "national_id:44K1;passport_number:C7Q2;email_address",
    ),
    (
        "C-1008",
        "Sofía Rodríguez",
        "sofia.rodriguez@example.com",
        "",
        "es",
        "US-FL",
        "email_address;password;ip_address",
    ),
    (
        "C-1009",
        "Olivia Brown",
        "olivia.brown@example.com",
        "+13125550106",
        "en",
        "US-IL",
        "ssn:1120;full_name;postal_address;phone_number:0106",
    ),
    (
        "C-1010",
        "Noah Wilson",
        "noah.wilson@example.com",
        "",
        "en",
        "US-CO",
        "payment_card:1881;email_address",
    ),
    (
        "C-1011",
        "Carmen López",
        "carmen.lopez@example.com",
        "+17865550107",
        "es",
        "US-FL",
        "health_insurance:5520;medical_records;ssn:4402",
    ),
    (
        "C-1012",
        "Daniel O'Brien",
        "daniel.obrien@example.com",
        "",
        "en",
        "US-MA",
        "username;password;email_address;ip_address",
    ),
]


def _demo_incident(actor: str) -> Incident:
    incident = db.session.scalar(select(Incident).where(Incident.slug == SLUG))
    if incident is not None:
        return incident
    return create_incident(
        slug=SLUG,
        title="Unauthorized access to our customer database",
        occurred_on=date(2026, 10, 2),
        occurred_to=date(2026, 10, 9),
        discovered_on=date(2026, 10, 9),
        contained_on=date(2026, 10, 10),
        # The facts that make the obligations page show more of the catalogue: a listed company
        # that found the breach material the day it was discovered (the SEC's four business
        # days run across a weekend and Columbus Day), and a HIPAA covered entity (two of the
        # demo's customers had health data exposed).
        materiality_on=date(2026, 10, 9),
        hipaa_role="covered_entity",
        status="notifying",
        what_happened=(
            "On October 9, 2026 we found that an unauthorized party had used a stolen employee "
            "credential to copy part of our customer database between October 2 and October 9. "
            "We closed the access the next day."
            "\n\n"
            "We have found no sign that the information has been misused, but we are telling "
            "you so that you can protect yourself."
        ),
        what_we_are_doing=(
            "We reset every employee credential, added hardware security keys for all staff, "
            "and hired an independent forensic firm. We reported the incident to law "
            "enforcement and to the state attorneys general."
            "\n\n"
            "We are offering you 24 months of identity protection at no cost."
        ),
        contact_phone="1-800-555-0199",
        contact_hours="Monday to Friday, 8 am to 8 pm Eastern",
        contact_email="privacy@example.com",
        # The same text for Spanish readers (the console edits it as "In Spanish").
        translations={
            "es": {
                "title": "Acceso no autorizado a nuestra base de datos de clientes",
                "what_happened": (
                    "El 9 de octubre de 2026 descubrimos que un tercero no autorizado había usado "
                    "la credencial robada de un empleado para copiar parte de nuestra base de "
                    "datos de clientes entre el 2 y el 9 de octubre. Cerramos el acceso al día "
                    "siguiente."
                    "\n\n"
                    "No hemos encontrado indicios de que la información se haya usado "
                    "indebidamente, pero le informamos para que pueda protegerse."
                ),
                "what_we_are_doing": (
                    "Cambiamos todas las credenciales de los empleados, agregamos llaves de "
                    "seguridad físicas para todo el personal y contratamos a una empresa forense "
                    "independiente. Denunciamos el incidente a las autoridades y a las fiscalías "
                    "generales de los estados."
                    "\n\n"
                    "Le ofrecemos 24 meses de protección de identidad sin costo."
                ),
                "contact_hours": "de lunes a viernes, de 8 a. m. a 8 p. m., hora del Este",
            }
        },
        actor=actor,
    )


def load_demo(*, actor: str) -> tuple[str, int]:
    """Create (or refresh) the demo incident and its customers, and queue their notices."""
    incident = _demo_incident(actor)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(imports.COLUMNS)
            writer.writerows(DEMO_CUSTOMERS)
        imports.import_customers(incident, path, actor=actor)
    _demo_approval(incident, actor)
    notices.queue_notices(incident, actor=actor)
    _demo_protection(incident, actor)
    return SLUG, len(DEMO_CUSTOMERS)


def _demo_protection(incident: Incident, actor: str) -> None:
    """A protection offer with a small code pool, so the demo shows enrollment too."""
    if protection.offer_for(incident.id) is not None:
        return
    protection.save_offer(
        incident,
        actor=actor,
        provider_name="Experian",
        product_name="IdentityWorks 3B",
        includes="Credit monitoring at all three bureaus\nIdentity restoration specialists\n"
        "Up to $1 million identity theft insurance",
        translations={
            "es": {
                "includes": "Monitoreo de crédito en las tres agencias\n"
                "Especialistas en restauración de identidad\n"
                "Seguro contra robo de identidad de hasta 1 millón de dólares"
            }
        },
        term_months=24,
        enroll_by=clock.now().date() + timedelta(days=120),
        enroll_url="https://www.experianidworks.com/3bcredit",
        enroll_phone="1-877-555-0100",
        terms_url="https://www.experianidworks.com/terms",
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "codes.txt"
        # Demo codes only: a real pool comes from the provider's file.
        path.write_text("\n".join(f"DEMO{n:04d}XQ7" for n in range(1, 9)) + "\n", encoding="utf-8")
        protection.import_codes(incident, path, actor=actor)


def _member(address: str, role: str, actor: str):
    """The team member with this address, invited (not set up) when new."""
    member = staff.by_email(address)
    if member is None:
        staff.invite(address, role, actor=actor)
        member = staff.by_email(address)
    return member


def _demo_approval(incident: Incident, actor: str) -> None:
    """The demo's campaign as the portal wants every campaign: drafted by the admin, approved
    by legal before it goes out (so the approval shows as evidence on the deadlines page)."""
    from portal.services import approvals, notice_preview

    content = notice_preview.pinned(incident)
    if not content["total"] or approvals.approved_for("campaign", incident.slug, content):
        return
    admin = _member(DEMO_ADMIN, "admin", actor)
    legal = _member(DEMO_LEGAL, "legal", actor)
    asked = approvals.submit(incident, "campaign", incident.slug, content, drafter=admin)
    approvals.approve(asked, approver=legal)


def team_invitations(*, actor: str) -> list[tuple[str, str, str | None]]:
    """(address, role, set-up link or None when already set up) for each of the demo's team."""
    found = []
    for address, role in DEMO_TEAM:
        member = staff.by_email(address)
        if member is not None and member.ready and member.disabled_at is None:
            found.append((address, role, None))
        else:
            found.append((address, role, staff.invite(address, role, actor=actor)))
    return found
