"""The `portal` command: a Flask CLI group; each command parses, calls one service, reports."""

from __future__ import annotations

import getpass
import logging
import signal
import sys
import time
from datetime import date
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from portal import unit_of_work
from portal.config import ConfigError


def _actor() -> str:
    from portal.models.audit import cli_actor

    return cli_actor(getpass.getuser())


def _incident(slug: str):
    from portal.services.incidents import IncidentError, get_by_slug

    try:
        return get_by_slug(slug)
    except IncidentError as exc:
        raise click.ClickException(str(exc)) from exc


incident_cli = click.Group("incident", help="Create and inspect incidents.")
customers_cli = click.Group("customers", help="Import who was affected.")
notices_cli = click.Group("notices", help="Queue breach notices.")
outbox_cli = click.Group("outbox", help="Deliver and inspect queued messages.")
audit_cli = click.Group("audit", help="The audit trail.")
keys_cli = click.Group("keys", help="Data encryption keys.")
protection_cli = click.Group("protection", help="The identity-protection offer and its codes.")
staff_cli = click.Group("staff", help="Staff accounts (agents and admins).")


@staff_cli.command("invite")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["agent", "admin"]))
@unit_of_work.command
def staff_invite(email, role):
    """Print a one-time set-up link (24 hours) for a staff member. No default account exists."""
    from portal.services.staff import StaffError, invite

    try:
        link = invite(email, role, actor=_actor())
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Give this link to the staff member, in person or over a trusted channel.")
    click.echo("It works once, within 24 hours:")
    click.echo(link)


@incident_cli.command("create")
@click.option("--slug", required=True, help="Short name used by other commands, e.g. acme-2026.")
@click.option("--title", required=True)
@click.option("--discovered", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--occurred", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--contained", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--what-happened", default="")
@click.option("--what-we-are-doing", default="")
@click.option("--contact-phone", default="")
@click.option("--contact-hours", default="")
@click.option("--contact-email", default="")
@unit_of_work.command
def incident_create(slug, title, discovered, occurred, contained, **text):
    """Create an incident."""
    from portal.services.incidents import IncidentError, create_incident

    def day(value) -> date | None:
        return value.date() if value else None

    try:
        incident = create_incident(
            slug=slug,
            title=title,
            discovered_on=day(discovered),
            occurred_on=day(occurred),
            contained_on=day(contained),
            actor=_actor(),
            **text,
        )
    except IncidentError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created incident {incident.slug}.")


@customers_cli.command("import")
@click.option("--incident", "slug", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@unit_of_work.command
def customers_import(slug, file):
    """Validate FILE.csv, then import it (nothing is written if any row is bad)."""
    from portal.services.imports import ImportRejected, import_customers

    incident = _incident(slug)
    try:
        report = import_customers(incident, file, actor=_actor())
    except ImportRejected as exc:
        report = exc.report
        click.echo(
            f"Nothing was imported: {report.problem_count} problem(s) in {file.name}.", err=True
        )
        for problem in report.problems:
            click.echo(f"  {problem}", err=True)
        if report.problem_count > len(report.problems):
            click.echo(f"  ... and {report.problem_count - len(report.problems)} more.", err=True)
        sys.exit(1)
    click.echo(
        f"Imported {report.rows} rows: {report.created} new, {report.updated} updated, "
        f"{report.unchanged} unchanged; {report.exposures_added} exposures added, "
        f"{report.exposures_updated} updated."
    )


@notices_cli.command("send")
@click.option("--incident", "slug", required=True)
@unit_of_work.command
def notices_send(slug):
    """Queue a notice for every affected customer not yet notified (safe to run again)."""
    from portal.services.notices import queue_notices

    count = queue_notices(_incident(slug), actor=_actor())
    click.echo(f"Queued {count} notice(s).")


def _transports():
    from portal.mail.sms import DevMailbox, SMSTransport
    from portal.mail.smtp import SMTPTransport
    from portal.services.outbox import Transports

    config = current_app.config
    development = config["PORTAL_ENV"] == "development"
    if config["SMTP_URL"]:
        email = SMTPTransport(config["SMTP_URL"])
    elif development:
        email = DevMailbox()  # development: accepted here, readable at /dev/mail
    else:
        raise click.ClickException(
            "PORTAL_SMTP_URL is not set: there is nowhere to deliver to. In development, "
            "read the messages at /dev/mail."
        )
    if config["SMS_URL"]:
        sms = SMSTransport(config["SMS_URL"], config["SMS_TOKEN"])
    else:
        sms = DevMailbox() if development else None  # texts wait until a provider is set
    webhook = None
    if config["WEBHOOK_URL"]:
        from portal.mail.webhook import WebhookTransport

        webhook = WebhookTransport(config["WEBHOOK_SECRET"])
    return Transports(email=email, sms=sms, webhook=webhook)


def work_turn(transports=None):
    """One turn of the worker loop, each step its own unit of work: a batch of due messages
    (when transports are given), then one due job. Returns (the batch's result or None, the job
    or None)."""
    from portal.services import background, contact_changes, outbox

    batch = None
    if transports is not None:
        with unit_of_work.unit():  # sent is recorded as sent
            batch = outbox.deliver_batch(transports)
    # One job a turn, also while mail is waiting: a new-link request must not wait for a whole
    # campaign to go out. A long job (an import) holds this worker meanwhile; others go on.
    with unit_of_work.unit():
        job = background.run_one()
    # A staff contact change that waited out its hold applies on the next turn, not only when
    # someone next acts on that customer.
    with unit_of_work.unit():
        contact_changes.settle_due()
    return batch, job


def _busy(batch, job) -> bool:
    """Did the turn get anything done (not only messages that failed to go again)?"""
    sent = batch is not None and batch.sent + batch.failed + batch.expired > 0
    return sent or job is not None


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--idle-seconds", default=2.0, show_default=True, help="Pause when nothing is due.")
def outbox_work(once, idle_seconds):
    """Deliver queued messages and run queued jobs; several workers may run at once on
    PostgreSQL."""
    from portal.services.outbox import BatchResult

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    transports = _transports()
    stopping = []

    def stop(*_args):
        stopping.append(True)  # finish the batch or job in hand, then leave

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    total, jobs = BatchResult(), 0
    try:
        while not stopping:
            batch, job = work_turn(transports)
            for name in ("sent", "retried", "failed", "expired"):
                setattr(total, name, getattr(total, name) + getattr(batch, name))
            jobs += job is not None
            if _busy(batch, job):
                continue
            if once:
                break
            time.sleep(idle_seconds)
    finally:
        transports.close()
    if once:
        click.echo(
            f"Sent {total.sent}, retrying {total.retried}, failed {total.failed}, "
            f"expired {total.expired}."
        )
        if jobs:
            click.echo(f"Ran {jobs} job(s).")


jobs_cli = click.Group("jobs", help="Background jobs (imports, campaigns, new-link requests).")


@jobs_cli.command("work")
@click.option("--once", is_flag=True, help="Run what is waiting, then exit.")
def jobs_work(once):
    """Run queued jobs only (`portal outbox work` runs them too, between its batches)."""
    while True:
        _batch, job = work_turn()
        if job is not None:
            click.echo(f"Job {job.kind} {job.public_id}: {job.status}.")
        elif once:
            return
        else:
            time.sleep(2)


@outbox_cli.command("status")
@unit_of_work.command
def outbox_status():
    """Counts by state and the oldest message due."""
    from portal.services import outbox

    state = outbox.status()
    for name, count in state.counts.items():
        click.echo(f"{name:8} {count}")
    oldest = state.oldest_due_at.isoformat() if state.oldest_due_at else "none"
    click.echo(f"due now  {state.due_now}")
    click.echo(f"oldest queued next attempt: {oldest}")


@audit_cli.command("verify")
@unit_of_work.command
def audit_verify():
    """Walk the audit hash chain and name the first broken link."""
    from portal.services.audit import verify_chain

    report = verify_chain()
    if report.broken_at is not None:
        click.echo(
            f"Broken at event {report.broken_at}: {report.reason} "
            f"({report.checked} events before it are intact).",
            err=True,
        )
        sys.exit(1)
    click.echo(f"The audit chain is intact ({report.checked} events).")


@keys_cli.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@unit_of_work.command
def keys_rotate(batch_size):
    """Re-encrypt personal data to the newest data key (safe to interrupt and rerun)."""
    from portal.services.keys import rotate, stale_counts

    def show(progress):
        click.echo(f"  {progress.table}: checked {progress.seen}, re-sealed {progress.resealed}")

    counts = rotate(actor=_actor(), progress=show, batch_size=batch_size)
    click.echo("Re-encrypted: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    left = {table: n for table, n in stale_counts().items() if n}
    if left:
        # Written meanwhile by a process still running with the old key list: run again.
        click.echo("Still under an older key: " + ", ".join(f"{k} {v}" for k, v in left.items()))
        sys.exit(1)
    click.echo("Nothing is sealed with an older key: the old key can be removed.")


@keys_cli.command("status")
def keys_status():
    """How many rows per table still hold a value sealed with an older data key."""
    from portal.services.keys import stale_counts

    counts = stale_counts()
    for table, n in counts.items():
        click.echo(f"  {table}: {n}")
    if any(counts.values()):
        click.echo("Run `portal keys rotate` before removing an old key.")
        sys.exit(1)
    click.echo("Nothing is sealed with an older key.")


@protection_cli.command("offer")
@click.option("--incident", "slug", required=True)
@click.option("--provider", "provider_name", help="The provider's name, e.g. Experian.")
@click.option("--product", "product_name", help="The product, e.g. IdentityWorks 3B.")
@click.option("--includes", help="What it includes, items separated by ';'.")
@click.option(
    "--includes-es",
    help="The same list in Spanish, items separated by ';' (empty: Spanish readers see English).",
)
@click.option("--term-months", type=int)
@click.option("--enroll-by", type=click.DateTime(["%Y-%m-%d"]), help="The enrollment deadline.")
@click.option("--enroll-url", help="The provider's enrollment address (https).")
@click.option("--enroll-phone", help="The provider's enrollment phone line.")
@click.option("--terms-url", help="The provider's terms (https).")
@click.option(
    "--eligible",
    "eligible_classes",
    help="Data classes that qualify, comma list; empty: everyone affected.",
)
@click.option("--minors-product", help="A separate product for minors, if any.")
@unit_of_work.command
def protection_offer(slug, includes, includes_es, enroll_by, **fields):
    """Create or update the incident's identity-protection offer."""
    from portal.services.protection import ProtectionError, offer_for, save_offer

    incident = _incident(slug)
    if includes is not None:
        fields["includes"] = "\n".join(p.strip() for p in includes.split(";") if p.strip())
    if includes_es is not None:
        items = "\n".join(p.strip() for p in includes_es.split(";") if p.strip())
        fields["translations"] = {"es": {"includes": items}}
    if enroll_by is not None:
        fields["enroll_by"] = enroll_by.date()
    creating = offer_for(incident.id) is None
    required = ("provider_name", "product_name", "enroll_url")
    if creating and (enroll_by is None or any(not fields.get(k) for k in required)):
        raise click.ClickException(
            "A new offer needs --provider, --product, --enroll-by and --enroll-url."
        )
    try:
        save_offer(incident, actor=_actor(), **fields)
    except ProtectionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'Created' if creating else 'Updated'} the offer for {slug}.")


@protection_cli.command("import-codes")
@click.option("--incident", "slug", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@unit_of_work.command
def protection_import_codes(slug, file):
    """Load the provider's activation codes (one per line, or a CSV with a code column)."""
    from portal.services.protection import CodesRejected, ProtectionError, import_codes

    try:
        report = import_codes(_incident(slug), file, actor=_actor())
    except ProtectionError as exc:
        raise click.ClickException(str(exc)) from exc
    except CodesRejected as exc:
        click.echo(f"Nothing was loaded: {exc.report.problem_count} problem(s).", err=True)
        for line, reason in exc.report.problems:
            click.echo(f"  line {line}: {reason}", err=True)
        sys.exit(1)
    click.echo(
        f"Loaded {report.added} codes; {report.handed_to_waiting} went to customers "
        "who were waiting."
    )


@protection_cli.command("export")
@click.option("--incident", "slug", required=True)
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@unit_of_work.command
def protection_export(slug, file):
    """Write who enrolled, when and with which code, for the provider (CSV)."""
    from portal.services.protection import ProtectionError, export

    try:
        count = export(_incident(slug), file, actor=_actor())
    except ProtectionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Exported {count} enrollments to {file}.")


@click.command("demo")
@unit_of_work.command
def demo():
    """Load a demo incident with demo customers and queue their notices."""
    from portal.services.demo import DEMO_ADMIN, admin_invitation, load_demo

    slug, count = load_demo(actor=_actor())
    click.echo(f"Demo incident {slug}: {count} customers, notices queued.")
    link = admin_invitation(actor=_actor())
    if link is None:
        login = f"{current_app.config['BASE_URL']}/staff/login"
        click.echo(f"Staff: the demo admin {DEMO_ADMIN} is set up; sign in at {login}")
    else:
        click.echo(f"Staff: set up the demo admin {DEMO_ADMIN} (works once, within 24 hours):")
        click.echo(link)


COMMANDS = [
    incident_cli,
    customers_cli,
    notices_cli,
    outbox_cli,
    audit_cli,
    keys_cli,
    protection_cli,
    staff_cli,
    jobs_cli,
    demo,
]


def register(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


def _create_app():
    from portal import create_app

    return create_app()


cli = FlaskGroup(
    create_app=_create_app, add_version_option=False, help="The breach portal's command line."
)


def main() -> None:
    """Entry point of the `portal` script: a clear message, not a traceback, on bad config."""
    try:
        from portal import config, instance_path

        config.load(instance_path=instance_path())
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    cli.main(prog_name="portal")
