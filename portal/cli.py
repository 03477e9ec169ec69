"""The `portal` command: a Flask CLI group; each command parses, calls one service, reports."""

from __future__ import annotations

import getpass
import logging
import sys
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
staff_cli = click.Group("staff", help="Staff accounts (agents, admins and the response team).")
retention_cli = click.Group("retention", help="Delete what is past its retention period.")
letters_cli = click.Group("letters", help="Printed letters for the mail house.")


@retention_cli.command("run")
@unit_of_work.command
def retention_run():
    """Delete finished messages, used or expired codes and ended sessions past their periods
    (the *_RETENTION_TTL settings); safe to run at any time, e.g. daily from cron."""
    from portal.services import retention

    periods = retention.periods()
    counts = retention.run(actor=_actor(), keep_batches=True)
    for kind, count in counts.items():
        click.echo(f"{kind:10} deleted {count} (kept {periods[kind].days} days)")


@staff_cli.command("invite")
@click.option("--email", required=True)
@click.option(
    "--role",
    "roles",
    required=True,
    multiple=True,
    # agent|admin as ever; the response team's roles too, and --role again for several.
    type=click.Choice(["agent", "admin", "legal", "communications", "security", "support_lead"]),
    help="agent or admin (or legal, communications, security, support_lead); repeat for more.",
)
@unit_of_work.command
def staff_invite(email, roles):
    """Print a one-time set-up link (one hour) for a staff member. No default account exists."""
    from portal.services.staff import StaffError, invite

    try:
        link = invite(email, roles[0], actor=_actor(), roles=roles[1:])
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Give this link to the staff member, in person or over a trusted channel.")
    click.echo("It works once, within one hour (run this again for a new one):")
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
    from portal.services.runs import Busy

    incident = _incident(slug)
    try:
        report = import_customers(incident, file, actor=_actor())
    except Busy:
        raise click.ClickException(
            f"Another import into incident {slug} is running. Nothing was imported: run this "
            "again once it has finished (the same file then updates what it imported)."
        ) from None
    except ImportRejected as exc:
        report = exc.report
        if report.complete:
            checked = f" in {report.rows} row(s) of {file.name}"
        else:  # reading stopped early: the rows counted so far are not the file's
            checked = f"; {file.name} could not be read to its end"
        click.echo(f"Nothing was imported: {report.problem_count} problem(s){checked}.", err=True)
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
    from portal.services import approvals, notice_preview
    from portal.services.notices import queue_notices
    from portal.services.runs import Busy

    incident = _incident(slug)
    content = notice_preview.pinned(incident)
    try:
        # The same four-eyes gate as the console: no override from a shell (two admins
        # confirm an override in the console, each proving who they are). Nobody waiting:
        # nothing goes out, so a second run stays a harmless no-op.
        if content["total"]:
            approvals.require("campaign", incident.slug, content)
    except approvals.NotApproved:
        raise click.ClickException(
            f"The notices of incident {slug} are not approved as they are now: nothing was "
            "queued. Legal approves the campaign in the console (Notice campaign, Ask legal to "
            "approve); a change after approval needs approving again."
        ) from None
    try:
        count = queue_notices(incident, actor=_actor())
    except Busy:
        raise click.ClickException(
            f"Notices for incident {slug} are being queued by another run. Nothing was queued "
            "by this one: run it again once the other has finished (it queues only what is left)."
        ) from None
    click.echo(f"Queued {count} notice(s).")


def _transports():
    from portal.mail.sms import DevMailbox, SMSTransport
    from portal.mail.smtp import SMTPTransport
    from portal.services.outbox import Transports

    config = current_app.config
    development = config["PORTAL_ENV"] == "development"
    if config["SMTP_URL"]:
        email = SMTPTransport(config["SMTP_URL"], timeout=config["SMTP_TIMEOUT"])
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
    """One turn of the worker loop (portal.worker.turn), for tests and the browser tests' worker."""
    from portal.worker import turn

    return turn(transports, lambda: False)


def _work(transports, *, once: bool, idle_seconds: float):
    """Run the worker loop; a database that is away when `--once` was asked is a plain error."""
    from portal.worker import Worker, database_away

    worker = Worker(transports, once=once, idle_seconds=idle_seconds)
    worker.handle_signals()
    try:
        return worker.run()
    except Exception as error:
        if once and database_away(error):
            raise click.ClickException(
                "The database cannot be reached; nothing was lost. Try again when it is back."
            ) from error
        raise


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--idle-seconds", default=2.0, show_default=True, help="Pause when nothing is due.")
def outbox_work(once, idle_seconds):
    """Deliver queued messages and run queued jobs; several workers may run at once on
    PostgreSQL. Waits out a database or mail server that is away; SIGTERM stops it after the
    message in hand."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    transports = _transports()
    try:
        total = _work(transports, once=once, idle_seconds=idle_seconds)
    finally:
        transports.close()
    if once:
        click.echo(
            f"Sent {total.sent}, retrying {total.retried}, failed {total.failed}, "
            f"expired {total.expired}."
        )
        if total.jobs:
            click.echo(f"Ran {total.jobs} job(s).")
        if total.unreachable:
            # For whoever runs this from cron: the messages are safe, but they did not go.
            for kind, why in sorted(total.unreachable.items()):
                click.echo(f"Waiting: the {kind} server cannot be reached ({why}).", err=True)
            sys.exit(1)


jobs_cli = click.Group("jobs", help="Background jobs (imports, campaigns, new-link requests).")


@jobs_cli.command("work")
@click.option("--once", is_flag=True, help="Run what is waiting, then exit.")
def jobs_work(once):
    """Run queued jobs only (`portal outbox work` runs them too, between its passes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    total = _work(None, once=once, idle_seconds=2.0)
    for job in total.finished:
        click.echo(f"Job {job.kind} {job.public_id}: {job.status}.")


@outbox_cli.command("retry")
@click.option("--failed", is_flag=True, required=True, help="Queue failed messages again.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
    help="Only those that failed at or after this time (UTC), e.g. 2026-11-27 or 2026-11-27T09:00.",
)
@click.option("--kind", type=click.Choice(["email", "sms", "webhook"]), help="Only this kind.")
@unit_of_work.command
def outbox_retry(failed, since, kind):
    """Queue again every message that failed for good (notices, codes, links, update emails,
    webhooks), as the very same message, once the cause is fixed."""
    from datetime import UTC

    from portal.services import outbox

    outcome = outbox.requeue_failed(
        actor=_actor(), since=since.replace(tzinfo=UTC) if since else None, kind=kind
    )
    click.echo(f"Queued again: {outcome.requeued}.")
    if outcome.expired:
        click.echo(
            f"Not queued, past their expiry (a code or link that would come too late): "
            f"{outcome.expired}."
        )
    if outcome.emptied:
        click.echo(f"Not queued, their content was removed when they failed: {outcome.emptied}.")


@outbox_cli.command("status")
@unit_of_work.command
def outbox_status():
    """Counts by state, the oldest message waiting, and the alert: exits 1 while a message has
    waited longer than PORTAL_OUTBOX_ALERT_MINUTES (for a monitoring check)."""
    from portal.services import outbox

    state = outbox.status()
    for name, count in state.counts.items():
        click.echo(f"{name:8} {count}")
    oldest = state.oldest_due_at.isoformat() if state.oldest_due_at else "none"
    click.echo(f"due now  {state.due_now}")
    click.echo(f"oldest queued next attempt: {oldest}")
    if state.waited is not None:
        click.echo(f"longest wait: {int(state.waited.total_seconds() // 60)} min")
    if state.alert:
        click.echo(
            f"ALERT: a message has waited longer than "
            f"{int(state.alert_after.total_seconds() // 60)} min: is a worker running, and can it "
            "reach the mail server? (docs/operations.md)",
            err=True,
        )
        sys.exit(1)


def _anchor(anchor_line: str | None, anchor_file: Path | None):
    """The checkpoint to check the chain against: the line given, else the newest in the file."""
    from portal.services.audit import AuditError, newest_checkpoint, parse_checkpoint

    try:
        if anchor_line:
            return parse_checkpoint(anchor_line)
        path = anchor_file or current_app.config["AUDIT_ANCHOR_FILE"]
        return newest_checkpoint(path) if path else None
    except AuditError as exc:
        # A checkpoint that does not verify is a broken trail too: exit 1, not a usage error.
        click.echo(f"Broken: {exc}", err=True)
        sys.exit(1)


def _show_segments(report) -> None:
    from portal.services.audit import LEGACY, chain_keys

    keys = [k.id for k in chain_keys()]
    for segment in report.segments:
        if segment.key == LEGACY:
            role = "legacy key"
        elif keys and segment.key == keys[0]:
            role = f"key {segment.key}, signing"
        else:
            role = f"key {segment.key}, verify-only"
        click.echo(f"  events {segment.first}-{segment.last}: {segment.count} ({role})")


@audit_cli.command("verify")
@click.option(
    "--anchor-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint file to check against (default PORTAL_AUDIT_ANCHOR_FILE).",
)
@click.option("--anchor", "anchor_line", help="A checkpoint line, e.g. copied from its email.")
@unit_of_work.command
def audit_verify(anchor_file, anchor_line):
    """Walk the audit hash chain, name the first broken link, and count what is missing since
    the newest checkpoint."""
    from portal.services.audit import verify_chain

    checkpoint = _anchor(anchor_line, anchor_file)
    report = verify_chain(checkpoint=checkpoint)
    if report.broken:
        click.echo(report.summary(), err=True)
        sys.exit(1)
    click.echo(report.summary())
    _show_segments(report)
    if checkpoint is None:
        where = anchor_file or current_app.config["AUDIT_ANCHOR_FILE"]
        click.echo(
            "No checkpoint to check the tail against"
            + (f" (none in {where} yet)" if where else "")
            + ": run `portal audit checkpoint`."
        )
    else:
        click.echo(
            f"All {checkpoint.count} events of the checkpoint of {checkpoint.when} are present."
        )


@audit_cli.command("checkpoint")
@click.option(
    "--file",
    "anchor_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the checkpoint to this file (default PORTAL_AUDIT_ANCHOR_FILE).",
)
@click.option(
    "--email/--no-email",
    default=None,
    help="Send it to PORTAL_ALERT_EMAIL (default: PORTAL_AUDIT_ANCHOR_EMAIL).",
)
@unit_of_work.command
def audit_checkpoint(anchor_file, email):
    """Verify the chain, then anchor its head outside the database (run it every few minutes)."""
    from portal.services.audit import (
        append_checkpoint,
        mail_broken_chain,
        mail_checkpoint,
        make_checkpoint,
        verify_chain,
    )

    config = current_app.config
    path = anchor_file or config["AUDIT_ANCHOR_FILE"]
    email = config["AUDIT_ANCHOR_EMAIL"] if email is None else email
    if not path and not email:
        raise click.ClickException(
            "Nowhere to keep the checkpoint: set PORTAL_AUDIT_ANCHOR_FILE or "
            "PORTAL_AUDIT_ANCHOR_EMAIL=1 (or pass --file / --email)."
        )
    report = verify_chain(checkpoint=_anchor(None, path))
    if report.broken:
        # Never bless a broken chain with a fresh checkpoint; tell the operators instead.
        mail_broken_chain(report)
        click.echo(report.summary() + " No checkpoint was written.", err=True)
        sys.exit(1)
    checkpoint = make_checkpoint()
    if path:
        append_checkpoint(checkpoint, path)
        click.echo(f"Checkpoint of {checkpoint.count} events appended to {path}.")
    if email:
        mail_checkpoint(checkpoint)
        click.echo(f"Checkpoint of {checkpoint.count} events queued to {config['ALERT_EMAIL']}.")


@audit_cli.command("new-key")
def audit_new_key():
    """Print a fresh audit key for PORTAL_AUDIT_KEYS (put it first; keep the old ones after)."""
    from portal.config import new_data_key

    click.echo(new_data_key())


@audit_cli.command("legacy-key")
def audit_legacy_key():
    """Print the key that signed events written before the chain had keys of its own (derived
    from the signing key and its fallbacks): add it at the end of PORTAL_AUDIT_KEYS before the
    signing key is rotated away."""
    from portal.config import legacy_audit_key

    config = current_app.config
    for secret in [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]:
        click.echo(legacy_audit_key(secret))


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
@click.option(
    "--regions",
    help="Where the offer is open, comma list of countries (US) or subdivisions (US-CA); "
    "empty: everywhere.",
)
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


@letters_cli.command("build")
@click.option("--incident", "slug", required=True)
@click.argument("out_dir", type=click.Path(file_okay=False, writable=True, path_type=Path))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Letters per PDF file.",
)
@unit_of_work.command
def letters_build(slug, out_dir, batch_size):
    """Write the letters due as PDFs (one per batch) and a manifest CSV for the mail house."""
    from portal.services import approvals
    from portal.services.letters import LetterError, build, pinned

    incident = _incident(slug)
    content = pinned(incident)
    if content["total"]:
        try:
            # The console's four-eyes gate, here too: legal approves the batch first.
            approvals.require("letters", incident.slug, content)
        except approvals.NotApproved:
            raise click.ClickException(
                f"The letters of incident {slug} are not approved as they are now: nothing was "
                "printed. Legal approves them in the console (Printed letters, Ask legal to "
                "approve); a change after approval needs approving again."
            ) from None
    try:
        count, files, manifest = build(incident, out_dir, batch_size=batch_size, actor=_actor())
    except (LetterError, OSError) as exc:
        # A ClickException commits its unit: undo the batches recorded before the failure.
        unit_of_work.rollback()
        raise click.ClickException(f"No letters were recorded: {exc}") from exc
    click.echo(f"Wrote {count} letter(s) in {len(files)} file(s); manifest: {manifest}")


@letters_cli.command("mark-mailed")
@click.option("--incident", "slug", required=True)
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--on",
    "mailed_on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The mailing date (YYYY-MM-DD); today when left out.",
)
@unit_of_work.command
def letters_mark_mailed(slug, manifest, mailed_on):
    """Record that the letters of MANIFEST.csv were mailed."""
    from portal import clock
    from portal.services.letters import LetterError, mark_mailed

    incident = _incident(slug)
    day = mailed_on.date() if mailed_on else clock.now().date()
    try:
        count = mark_mailed(incident, manifest, day, actor=_actor())
    except LetterError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Marked {count} letter(s) mailed on {day.isoformat()}.")


@click.command("demo")
@unit_of_work.command
def demo():
    """Load a demo incident with demo customers and queue their notices."""
    from portal.services.demo import load_demo, team_invitations

    slug, count = load_demo(actor=_actor())
    click.echo(f"Demo incident {slug}: {count} customers, notices queued (approved by legal).")
    # The admin first, then legal and communications: each sets up their own account.
    for address, role, link in team_invitations(actor=_actor()):
        if link is None:
            login = f"{current_app.config['STAFF_BASE_URL']}/staff/login"
            click.echo(f"Staff: the demo {role} {address} is set up; sign in at {login}")
        else:
            click.echo(f"Staff: set up the demo {role} {address} (works once, within one hour):")
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
    retention_cli,
    jobs_cli,
    letters_cli,
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
