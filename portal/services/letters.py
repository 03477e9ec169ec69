"""Printed letters: who gets one, the print files for the mail house, and the mailing date.

A letter carries the same text as the person's email notice (the same rendering,
notices.Variants.compose), their reference code printed large, a QR code to BASE_URL/start, the
organisation's return address, and a line on how to check that the letter is genuine.

Layout: US Letter, folded in three for a US #10 window envelope (window 4.5 x 1.125 in, 7/8 in
from the left edge): the recipient's block sits 22 mm from the left and 51 mm from the top.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import segno
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import case, exists, func, insert, or_, select, update

from portal import clock, spreadsheet
from portal.extensions import db, vault
from portal.i18n import language_for
from portal.mail.mime import fill
from portal.models import DATA_CLASSES, Customer, Exposure, Incident, Letter, Notice, OutboxMessage
from portal.models.customer import new_public_ids
from portal.models.notice import new_link_nonce
from portal.models.sealed import context
from portal.services import audit, reference_codes, runs
from portal.services.background import Later, Progress, job

# The same rule as the protection export's: a spreadsheet runs a cell starting with = + - @.

if TYPE_CHECKING:
    from fpdf import FPDF

MANIFEST_COLUMNS = (
    "letter_id",
    "batch_file",
    "page_count",
    "name",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
)

# Core PDF fonts are cp1252/latin-1: typographic marks outside it are written as their plain
# equivalents (Spanish letters are all inside it).
_PLAIN = str.maketrans(
    {
        "•": "*",
        "—": "-",
        "–": "-",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "…": "...",
        "\u00a0": " ",
        "→": "->",
    }
)


class LetterError(Exception):
    """A request about letters that cannot be carried out; nothing was changed."""


@dataclass(frozen=True)
class Counts:
    due: int
    produced: int
    mailed: int
    no_address: int


def _affected(incident: Incident):
    return (
        select(Exposure.customer_id).where(Exposure.incident_id == incident.id).distinct()
    ).scalar_subquery()


def _bounced(incident: Incident):
    """The person's notice email failed for good (the outbox's failed state)."""
    return exists().where(
        Notice.customer_id == Customer.id,
        Notice.incident_id == incident.id,
        OutboxMessage.notice_id == Notice.id,
        OutboxMessage.status == "failed",
    )


def _reason(incident: Incident):
    """The reason a person needs paper, or NULL: the rules of 'Who gets a letter'."""
    whens = []
    if incident.postal_notice:
        # HIPAA: first-class mail unless the person agreed to email.
        whens.append(
            (
                or_(Customer.email_consent.is_(None), Customer.email_consent.is_(False)),
                "postal_notice",
            )
        )
    whens.append((Customer.email_sealed.is_(None), "no_email"))
    whens.append((_bounced(incident), "bounced"))
    return case(*whens, else_=None)


def plan(incident: Incident) -> int:
    """Record a letter due for everyone the rules now choose (agents' marks are already rows)."""
    reason = _reason(incident)
    already = exists().where(Letter.incident_id == incident.id, Letter.customer_id == Customer.id)
    rows = db.session.execute(
        select(Customer.id, reason)
        .where(Customer.id.in_(_affected(incident)), reason.is_not(None), ~already)
        .order_by(Customer.id)
    ).all()
    ids = new_public_ids(len(rows))
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        db.session.execute(
            insert(Letter),
            [
                {"public_id": pid, "customer_id": cid, "incident_id": incident.id, "reason": why}
                for (cid, why), pid in zip(chunk, ids[start : start + 5000], strict=True)
            ],
        )
    return len(rows)


def request_letter(incident: Incident, customer: Customer, *, actor: str) -> bool:
    """An agent's mark: this person gets a letter. False when one is already recorded."""
    if db.session.scalar(
        select(Letter.id).where(
            Letter.incident_id == incident.id, Letter.customer_id == customer.id
        )
    ):
        return False
    affected = db.session.scalar(
        select(Exposure.id)
        .where(Exposure.incident_id == incident.id, Exposure.customer_id == customer.id)
        .limit(1)
    )
    if affected is None:
        raise LetterError(_("This person was not affected by that incident."))
    db.session.add(
        Letter(customer_id=customer.id, incident_id=incident.id, reason="agent", requested_by=actor)
    )
    db.session.flush()
    audit.record(
        "letter.requested",
        actor=actor,
        subject_type="customer",
        subject_id=customer.public_id,
        details={"incident": incident.slug},
    )
    return True


def counts(incident: Incident) -> Counts:
    """Letters due (not yet printed), produced, mailed; and those due that lack an address."""
    base = select(func.count()).select_from(Letter).where(Letter.incident_id == incident.id)
    due = db.session.scalar(base.where(Letter.produced_at.is_(None)))
    produced = db.session.scalar(base.where(Letter.produced_at.is_not(None)))
    mailed = db.session.scalar(base.where(Letter.mailed_on.is_not(None)))
    no_address = db.session.scalar(
        base.join(Customer, Customer.id == Letter.customer_id).where(
            Letter.produced_at.is_(None), Customer.address_line1_sealed.is_(None)
        )
    )
    return Counts(due or 0, produced or 0, mailed or 0, no_address or 0)


def mask_address(customer: Customer) -> str:
    """An address as agents see it: the city's initial, the region and the ZIP's first 3."""
    if customer.address_line1_sealed is None:
        return "—"
    city = customer.city or ""
    code = customer.postal_code or ""
    region = customer.region.split("-")[-1] if customer.region else ""
    return f"•••, {city[:1]}•••, {region} {code[:3]}••".strip()


# --- the print file ---


def _plain(text: str) -> str:
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


class _Printer:
    """One PDF per batch; letters added one page run at a time."""

    def __init__(self, incident: Incident):
        self.incident = incident
        self.base_url = current_app.config["BASE_URL"]
        self.return_address = current_app.config["RETURN_ADDRESS"]
        qr = io.BytesIO()
        segno.make(f"{self.base_url}/start", error="m").save(qr, kind="png", scale=6, border=2)
        self.qr = qr.getvalue()
        # Breaking a paragraph into lines is nearly all of fpdf2's time per letter (measured:
        # 97%), and the paragraphs of a notice repeat from one reader to the next: each is
        # broken once, its lines then written as plain cells.
        self.broken: dict[tuple, list[str]] = {}

    def lines(self, pdf: FPDF, text: str) -> list[str]:
        """The text's lines as the body's column breaks them (a paragraph broken once)."""
        out: list[str] = []
        for paragraph in text.split("\n"):
            if not paragraph.strip():
                out.append("")
                continue
            key = (pdf.font_family, pdf.font_style, pdf.font_size_pt, paragraph)
            broken = self.broken.get(key)
            if broken is None:
                if len(self.broken) > 20_000:  # the per-person lines must not grow it forever
                    self.broken.clear()
                broken = self.broken[key] = pdf.multi_cell(
                    0, 4.8, paragraph, dry_run=True, output="LINES"
                )
            out.extend(broken)
        return out

    def new_document(self) -> FPDF:
        # fpdf2 is loaded when a letter is made, not with the module: it adds 22 MB (measured,
        # max RSS) to every process that creates the app, among them a million-row import's,
        # which must stay under 200 MB, and the web workers, which never make a PDF.
        from fpdf import FPDF

        pdf = FPDF(format="letter", unit="mm")
        pdf.set_auto_page_break(auto=True, margin=18)
        pdf.set_margins(22, 15, 22)
        pdf.set_creator("portal")
        return pdf

    def letter(self, pdf: FPDF, person: dict, text: str) -> int:
        """Add one letter; returns its page count."""
        first = pdf.page + 1
        pdf.add_page()
        pdf.set_font("Helvetica", size=10)
        for line in self.return_address:
            pdf.cell(0, 4.5, _plain(line), new_x="LMARGIN", new_y="NEXT")
        pdf.image(self.qr, x=170, y=12, w=28)
        # The window: US #10, 7/8 in from the left, its top 2 in below the sheet's top.
        pdf.set_xy(22, 51)
        pdf.set_font("Helvetica", size=11)
        for line in person["address"]:
            pdf.cell(110, 5, _plain(line), new_x="LMARGIN", new_y="NEXT")
        pdf.set_xy(22, 85)
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 5, _plain(person["code_label"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Courier", "B", 22)
        pdf.cell(0, 11, person["code"], new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for line in self.lines(pdf, _plain(person["start_line"])):
            pdf.cell(0, 4.8, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        for line in self.lines(pdf, _plain(text)):
            pdf.cell(0, 4.8, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 10)
        for line in self.lines(pdf, _plain(person["genuine_line"])):
            pdf.cell(0, 4.8, line, new_x="LMARGIN", new_y="NEXT")
        return pdf.page - first + 1


def _notice_text(variants, cache: dict, locale: str, shown: tuple, values: dict) -> str:
    """The notice's text part for this variant (rendered once per variant), slots filled."""
    template = cache.get((locale, shown))
    if template is None:
        template = cache[(locale, shown)] = variants.compose(locale, shown).text
    return fill(template, values, html=False)


def _ensure_notices(incident: Incident, customer_ids: list[int]) -> dict[int, Notice]:
    """Each person's notice; one is made (code and nonce, no email) for those who had none."""
    from portal.services.notices import _fresh_reference_codes

    found = {
        n.customer_id: n
        for n in db.session.scalars(
            select(Notice).where(
                Notice.incident_id == incident.id, Notice.customer_id.in_(customer_ids)
            )
        )
    }
    missing = [cid for cid in customer_ids if cid not in found]
    if missing:
        postgres = db.engine.dialect.name == "postgresql"
        codes = _fresh_reference_codes(len(missing), postgres=postgres)
        for cid, code, pid in zip(missing, codes, new_public_ids(len(missing)), strict=True):
            notice = Notice(
                public_id=pid,
                customer_id=cid,
                incident_id=incident.id,
                reference_code=code,
                link_nonce=new_link_nonce(),
            )
            db.session.add(notice)
            found[cid] = notice
        db.session.flush()
    return found


def build(
    incident: Incident, out_dir: Path | str, *, batch_size: int = 500, actor: str, progress=None
) -> tuple[int, list[Path], Path]:
    """Write the letters due as PDFs of batch_size letters and a manifest; record them produced.

    Returns (letters, pdf paths, manifest path). Memory stays flat: one batch's rows and one
    PDF (fpdf2 keeps a document's pages until it is written) at a time.
    """
    from portal.services.notices import Variants, sensitivity_order

    if batch_size < 1:
        raise LetterError(_("The batch size must be at least 1."))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan(incident)
    printer = _Printer(incident)
    variants = Variants(incident)
    composed: dict[tuple, str] = {}
    stamp = clock.now()
    prefix = f"letters-{incident.slug}-{stamp:%Y%m%d%H%M%S}"
    manifest_path = out / f"{prefix}-manifest.csv"
    files: list[Path] = []
    total = 0
    fragment_at = context(Exposure, "fragment_sealed", "")
    with open(manifest_path, "w", newline="", encoding="utf-8") as manifest_file:
        manifest = csv.writer(manifest_file)
        manifest.writerow(MANIFEST_COLUMNS)
        last_id = 0
        while True:
            batch = db.session.execute(
                select(Letter.id, Letter.public_id, Customer)
                .join(Customer, Customer.id == Letter.customer_id)
                .where(
                    Letter.incident_id == incident.id,
                    Letter.produced_at.is_(None),
                    Customer.address_line1_sealed.is_not(None),
                    Letter.id > last_id,
                )
                .order_by(Letter.id)
                .limit(batch_size)
            ).all()
            if not batch:
                break
            last_id = batch[-1][0]
            customer_ids = [c.id for _l, _p, c in batch]
            notices = _ensure_notices(incident, customer_ids)
            exposures: dict[int, list] = {}
            for row in db.session.execute(
                select(Exposure.customer_id, Exposure.data_class, Exposure.fragment_sealed).where(
                    Exposure.incident_id == incident.id, Exposure.customer_id.in_(customer_ids)
                )
            ):
                exposures.setdefault(row.customer_id, []).append(row)
            name = f"{prefix}-{len(files) + 1:04d}.pdf"
            pdf = printer.new_document()
            produced = []
            for letter_id, public_id, customer in batch:
                found = []
                for e in exposures.get(customer.id, []):
                    fragment = None
                    if e.fragment_sealed is not None:
                        at = fragment_at + Exposure.binding(
                            customer.public_id, incident.id, e.data_class
                        )
                        fragment = vault.open(e.fragment_sealed, at)
                    found.append((e.data_class, fragment))
                found.sort(key=sensitivity_order)
                shown = tuple(
                    (k, bool(f) and DATA_CLASSES[k].fragment_label is not None) for k, f in found
                )
                notice = notices[customer.id]
                code = reference_codes.display(notice.reference_code)
                values = {"code": code, "link": f"{printer.base_url}/start"}
                values.update(
                    (f"f{n}", f)
                    for n, f in enumerate(
                        f for (_k, f), (_k2, has) in zip(found, shown, strict=True) if has
                    )
                )
                region = customer.region or ""
                city_line = " ".join(
                    p
                    for p in (
                        f"{customer.city or ''},",
                        region.split("-")[-1],
                        customer.postal_code or "",
                    )
                    if p
                )
                address = [
                    customer.name,
                    customer.address_line1,
                    customer.address_line2 or "",
                    city_line,
                ]
                with force_locale(language_for(customer.locale)):
                    text = _notice_text(variants, composed, customer.locale, shown, values)
                    person = {
                        "address": [line for line in address if line],
                        "code": code,
                        "code_label": _("Your reference code"),
                        "start_line": _(
                            "To see what this means for you, go to %(url)s (or scan the code) "
                            "and type your reference code.",
                            url=f"{printer.base_url}/start",
                        ),
                        "genuine_line": _(
                            "Not sure this letter is from us? Check it at %(url)s: type the "
                            "reference code above. We will never ask for a password or a full "
                            "card or Social Security number.",
                            url=f"{printer.base_url}/genuine",
                        ),
                    }
                pages = printer.letter(pdf, person, text)
                manifest.writerow(
                    [
                        spreadsheet.cell(v)
                        for v in (
                            public_id,
                            name,
                            str(pages),
                            customer.name,
                            customer.address_line1,
                            customer.address_line2 or "",
                            customer.city or "",
                            region,
                            customer.postal_code or "",
                        )
                    ]
                )
                produced.append({"l_id": letter_id, "n_id": notice.id, "pages": pages})
            pdf.output(str(out / name))
            del pdf
            files.append(out / name)
            for row in produced:
                db.session.execute(
                    update(Letter)
                    .where(Letter.id == row["l_id"])
                    .values(
                        batch_file=name,
                        page_count=row["pages"],
                        produced_at=stamp,
                        notice_id=row["n_id"],
                    )
                )
            total += len(produced)
            db.session.flush()
            # Flat memory: the batch's people and notices leave the session (the incident and
            # anything the caller holds stay attached).
            for _letter_id, _public_id, customer in batch:
                db.session.expunge(customer)
            for notice in notices.values():
                db.session.expunge(notice)
            if progress:
                progress(total)
    audit.record(
        "letters.built",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"letters": total, "files": len(files)},
    )
    return total, files, manifest_path


def due_with_address(incident: Incident) -> int:
    """How many letters due have an address to print (what a build writes)."""
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Letter)
            .join(Customer, Customer.id == Letter.customer_id)
            .where(
                Letter.incident_id == incident.id,
                Letter.produced_at.is_(None),
                Customer.address_line1_sealed.is_not(None),
            )
        )
        or 0
    )


@job("build_letters")
def _build_job(payload: dict, progress: Progress) -> dict:
    """Job: write the print files of the letters due (100,000 letters take minutes: never in a
    request), then name them for the console's download links."""
    incident = db.session.get(Incident, payload["incident_id"])
    try:
        # Two builds at once would print the same letters twice: the second waits its turn.
        runs.hold_for_transaction(runs.LETTERS, incident.id)
    except runs.Busy:
        raise Later() from None
    plan(incident)
    total = due_with_address(incident)
    progress(0, total)
    count, files, manifest = build(
        incident,
        payload["out_dir"],
        actor=payload["actor"],
        progress=lambda done: progress(done, total),
    )
    return {
        "slug": incident.slug,
        "letters": count,
        "files": [path.name for path in files],
        "manifest": manifest.name if count else None,
    }


def mark_mailed(
    incident: Incident, manifest_path: Path | str, mailed_on: date, *, actor: str
) -> int:
    """Record the mailing date of every letter in a manifest; nothing changes if one is wrong."""
    try:
        # utf-8-sig: a manifest opened and saved again in a spreadsheet starts with a BOM.
        with open(manifest_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "letter_id" not in reader.fieldnames:
                raise LetterError(_("This is not a letters manifest: it has no letter_id column."))
            ids = [row["letter_id"].strip() for row in reader if row.get("letter_id")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LetterError(_("The manifest could not be read.")) from exc
    if not ids:
        raise LetterError(_("The manifest lists no letters."))
    known = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        known.update(
            db.session.execute(
                select(Letter.public_id, Letter.produced_at).where(
                    Letter.incident_id == incident.id, Letter.public_id.in_(chunk)
                )
            ).all()
        )
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise LetterError(
            _(
                "%(count)d letter(s) in the manifest are not letters of this incident; "
                "nothing was marked.",
                count=len(unknown),
            )
        )
    if any(known[i] is None for i in ids):
        raise LetterError(
            _("The manifest lists letters that were never produced; nothing was marked.")
        )
    if mailed_on > clock.now().date():
        raise LetterError(_("The mailing date is in the future; nothing was marked."))
    for start in range(0, len(ids), 5000):
        db.session.execute(
            update(Letter)
            .where(
                Letter.incident_id == incident.id, Letter.public_id.in_(ids[start : start + 5000])
            )
            .values(mailed_on=mailed_on)
        )
    audit.record(
        "letters.mailed",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"letters": len(ids), "mailed_on": mailed_on.isoformat()},
    )
    return len(ids)


def mailed_count(incident_id: int):
    """A scalar subquery: letters of the incident recorded as mailed (for the funnel)."""
    return (
        select(func.count())
        .select_from(Letter)
        .where(Letter.incident_id == incident_id, Letter.mailed_on.is_not(None))
        .scalar_subquery()
    )


@dataclass(frozen=True)
class Mailing:
    letters: int
    first_on: date | None
    last_on: date | None


def mailing_evidence(incident: Incident) -> Mailing:
    """How many letters were mailed and between which dates: evidence of notice by post."""
    count, first, last = db.session.execute(
        select(func.count(), func.min(Letter.mailed_on), func.max(Letter.mailed_on)).where(
            Letter.incident_id == incident.id, Letter.mailed_on.is_not(None)
        )
    ).one()
    return Mailing(int(count or 0), first, last)


def pinned(incident: Incident) -> dict:
    """What legal approves for a letters batch: the incident's words in each language (the
    letters print the notice) and how many letters the next build prints, per reason and
    language. Read only: the letters the rules would add are counted, not recorded."""
    from portal.services.notice_preview import incident_texts

    reason = _reason(incident)
    why = reason.label("why")  # grouped by its name: PostgreSQL sees one expression
    already = exists().where(Letter.incident_id == incident.id, Letter.customer_id == Customer.id)
    planned = db.session.execute(
        select(why, Customer.locale, func.count())
        .where(Customer.id.in_(_affected(incident)), reason.is_not(None), ~already)
        .group_by(why, Customer.locale)
    ).all()
    due = db.session.execute(
        select(Letter.reason, Customer.locale, func.count())
        .join(Customer, Customer.id == Letter.customer_id)
        .where(Letter.incident_id == incident.id, Letter.produced_at.is_(None))
        .group_by(Letter.reason, Customer.locale)
    ).all()
    counts: dict[str, int] = {}
    for cause, locale, n in [*planned, *due]:
        key = f"{cause} {locale}"
        counts[key] = counts.get(key, 0) + int(n)
    return {
        "incident": incident.slug,
        "texts": incident_texts(incident),
        "letters": dict(sorted(counts.items())),
        "total": sum(counts.values()),
    }
