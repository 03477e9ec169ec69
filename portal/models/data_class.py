"""The registry of exposable data types. In code, not a table: adding one is a reviewed change."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from portal.i18n import lazy_text as _l


class Sensitivity(IntEnum):
    """How much harm the exposure can do; plans and lists are ordered by it."""

    LOW = 1
    MODERATE = 2
    HIGH = 3
    CRITICAL = 4


@dataclass(frozen=True)
class DataClass:
    key: str
    label: object  # a lazy gettext string: translated when shown
    sensitivity: Sensitivity
    # How a masked fragment reads ("card ending 4242"); None when a fragment makes no sense.
    fragment_label: object | None = None
    # What it means for the person, in one plain sentence.
    explanation: object = ""

    def describe(self, fragment: str | None) -> str:
        """The plain-language line for this exposure, with its masked fragment if any."""
        if fragment and self.fragment_label is not None:
            return f"{self.label} ({self.fragment_label.format(fragment=fragment)})"
        return str(self.label)


_REGISTRY = [
    DataClass(
        "email_address",
        _l("Email address"),
        Sensitivity.MODERATE,
        None,
        _l("Expect more spam and convincing fake emails that mention this incident."),
    ),
    DataClass(
        "password",
        _l("Password for your account"),
        Sensitivity.CRITICAL,
        None,
        _l("Someone could try it here and on other sites where you used it."),
    ),
    DataClass(
        "username",
        _l("Username"),
        Sensitivity.LOW,
        None,
        _l("On its own it does little harm, but it helps someone guess your logins."),
    ),
    DataClass(
        "full_name",
        _l("Full name"),
        Sensitivity.LOW,
        None,
        _l("Often public already; combined with other details it makes scams more believable."),
    ),
    DataClass(
        "postal_address",
        _l("Postal address"),
        Sensitivity.MODERATE,
        None,
        _l("Watch for mail you did not expect, such as cards or bills you never asked for."),
    ),
    DataClass(
        "phone_number",
        _l("Phone number"),
        Sensitivity.MODERATE,
        _l("ending {fragment}"),
        _l("Expect scam calls and texts; be careful with anyone who calls you about this."),
    ),
    DataClass(
        "date_of_birth",
        _l("Date of birth"),
        Sensitivity.HIGH,
        None,
        _l("Used to check identity; with your name it helps someone pretend to be you."),
    ),
    DataClass(
        "ssn",
        _l("Social Security number"),
        Sensitivity.CRITICAL,
        _l("ending {fragment}"),
        _l(
            "Can be used to open credit or file taxes in your name; a credit freeze "
            "stops most of that."
        ),
    ),
    DataClass(
        "national_id",
        _l("National identity number"),
        Sensitivity.CRITICAL,
        _l("ending {fragment}"),
        _l("Can be used to pretend to be you with banks and government services."),
    ),
    DataClass(
        "drivers_license",
        _l("Driver's license number"),
        Sensitivity.HIGH,
        _l("ending {fragment}"),
        _l("Can be used on forged documents; your licensing office can flag it."),
    ),
    DataClass(
        "passport_number",
        _l("Passport number"),
        Sensitivity.HIGH,
        _l("ending {fragment}"),
        _l("Can be used on forged documents; the passport office can advise you."),
    ),
    DataClass(
        "tax_id",
        _l("Taxpayer identification number"),
        Sensitivity.CRITICAL,
        _l("ending {fragment}"),
        _l("Can be used to file a false tax return in your name."),
    ),
    DataClass(
        "payment_card",
        _l("Payment card number"),
        Sensitivity.HIGH,
        _l("card ending {fragment}"),
        _l("Someone could try to make purchases; your card issuer can replace the card."),
    ),
    DataClass(
        "bank_account",
        _l("Bank account number"),
        Sensitivity.HIGH,
        _l("account ending {fragment}"),
        _l("Someone could try to move money or set up payments; tell your bank."),
    ),
    DataClass(
        "security_questions",
        _l("Security questions and answers"),
        Sensitivity.HIGH,
        None,
        _l("The answers could unlock accounts wherever you used the same questions."),
    ),
    DataClass(
        "medical_records",
        _l("Medical records"),
        Sensitivity.CRITICAL,
        None,
        _l("Could be used to get care or drugs in your name; check what your insurer pays for."),
    ),
    DataClass(
        "health_insurance",
        _l("Health insurance information"),
        Sensitivity.HIGH,
        _l("member ID ending {fragment}"),
        _l("Could be used to bill your insurer for care you never received."),
    ),
    DataClass(
        "ip_address",
        _l("IP address"),
        Sensitivity.LOW,
        None,
        _l("Shows roughly where you connected from; little risk on its own."),
    ),
]

DATA_CLASSES: dict[str, DataClass] = {dc.key: dc for dc in _REGISTRY}
