"""The registry of exposable data types. In code, not a table: adding one is a reviewed change."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from flask_babel import lazy_gettext as _l


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

    def describe(self, fragment: str | None) -> str:
        """The plain-language line for this exposure, with its masked fragment if any."""
        if fragment and self.fragment_label is not None:
            return f"{self.label} ({self.fragment_label.format(fragment=fragment)})"
        return str(self.label)


_REGISTRY = [
    DataClass("email_address", _l("Email address"), Sensitivity.MODERATE),
    DataClass("password", _l("Password for your account"), Sensitivity.CRITICAL),
    DataClass("username", _l("Username"), Sensitivity.LOW),
    DataClass("full_name", _l("Full name"), Sensitivity.LOW),
    DataClass("postal_address", _l("Postal address"), Sensitivity.MODERATE),
    DataClass("phone_number", _l("Phone number"), Sensitivity.MODERATE, _l("ending {fragment}")),
    DataClass("date_of_birth", _l("Date of birth"), Sensitivity.HIGH),
    DataClass("ssn", _l("Social Security number"), Sensitivity.CRITICAL, _l("ending {fragment}")),
    DataClass(
        "national_id", _l("National identity number"), Sensitivity.CRITICAL, _l("ending {fragment}")
    ),
    DataClass(
        "drivers_license", _l("Driver's license number"), Sensitivity.HIGH, _l("ending {fragment}")
    ),
    DataClass("passport_number", _l("Passport number"), Sensitivity.HIGH, _l("ending {fragment}")),
    DataClass(
        "tax_id",
        _l("Taxpayer identification number"),
        Sensitivity.CRITICAL,
        _l("ending {fragment}"),
    ),
    DataClass(
        "payment_card", _l("Payment card number"), Sensitivity.HIGH, _l("card ending {fragment}")
    ),
    DataClass(
        "bank_account", _l("Bank account number"), Sensitivity.HIGH, _l("account ending {fragment}")
    ),
    DataClass("security_questions", _l("Security questions and answers"), Sensitivity.HIGH),
    DataClass("medical_records", _l("Medical records"), Sensitivity.CRITICAL),
    DataClass(
        "health_insurance",
        _l("Health insurance information"),
        Sensitivity.HIGH,
        _l("member ID ending {fragment}"),
    ),
    DataClass("ip_address", _l("IP address"), Sensitivity.LOW),
]

DATA_CLASSES: dict[str, DataClass] = {dc.key: dc for dc in _REGISTRY}
