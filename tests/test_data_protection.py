"""Personal data at rest: sealed, bound to its row, findable by blind index, rotatable."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from portal.config import new_data_key
from portal.crypto import DataVault, DecryptionError
from portal.extensions import db, vault
from portal.models import Customer, Exposure, OutboxMessage
from portal.services.customers import find_by_email
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import DATA_KEY, TABLES, customer_row

CANARIES = {
    "name": "Ximena Canarywood",
    "email": "ximena.canary@example.com",
    "phone": "+14155550199",
}


def raw_dump() -> str:
    """Everything the database holds, as a DBA (or a thief with a dump) would see it."""
    parts = []
    for table in TABLES:
        for row in db.session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
            for value in row:
                if isinstance(value, bytes | memoryview):
                    value = bytes(value).decode("latin-1")
                parts.append(str(value))
    return "\n".join(parts)


@pytest.fixture
def canary(incident, write_csv):
    row = customer_row(
        1,
        full_name=CANARIES["name"],
        email=CANARIES["email"],
        phone=CANARIES["phone"],
        # A fragment no hex id or digest can contain by chance (digits alone sometimes did).
        data_classes="ssn:X7QZ;full_name",
    )
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    return row


def test_a_raw_database_read_shows_no_email_phone_or_name(app, canary):
    dump = raw_dump()
    assert dump  # the read did see the rows
    for value in CANARIES.values():
        assert value not in dump
        assert value.lower() not in dump.lower()
    assert "Canarywood" not in dump
    assert "4155550199" not in dump
    assert "X7QZ" not in dump  # even the masked fragment is sealed


def test_lookup_by_email_goes_through_the_blind_index(app, canary):
    (found,) = find_by_email("  Ximena.Canary@EXAMPLE.com ")
    assert found.name == CANARIES["name"]
    assert find_by_email("someone.else@example.com") == []


def test_ciphertext_moved_to_another_row_does_not_open(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1), customer_row(2)]), actor="test")
    first, second = db.session.scalars(select(Customer).order_by(Customer.id)).all()
    second.email_sealed = first.email_sealed
    with pytest.raises(DecryptionError):
        _ = second.email
    # ... nor into another column of the same row.
    first.name_sealed = first.email_sealed
    with pytest.raises(DecryptionError):
        _ = first.name


def test_tampered_ciphertext_does_not_open():
    local = DataVault([new_data_key()])
    sealed = bytearray(local.seal("secret", "ctx"))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError):
        local.open(bytes(sealed), "ctx")


def test_rotating_in_a_new_key_keeps_every_row_readable(app, runner, canary):
    newest = new_data_key()
    vault.load_keys([newest, DATA_KEY])  # PORTAL_DATA_KEYS=new,old
    db.session.expire_all()
    customer = db.session.scalars(select(Customer)).one()
    assert customer.email == CANARIES["email"]  # old rows still open
    assert find_by_email(CANARIES["email"]) == [customer]  # and are still found

    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "customer 1" in result.output

    vault.load_keys([newest])  # the old key retired
    db.session.expire_all()
    customer = db.session.scalars(select(Customer)).one()
    assert (customer.name, customer.email, customer.phone) == (
        CANARIES["name"],
        CANARIES["email"],
        CANARIES["phone"],
    )
    assert {e.fragment for e in db.session.scalars(select(Exposure))} == {"X7QZ", None}
    assert find_by_email(CANARIES["email"]) == [customer]
    from portal.services.outbox import open_message

    message = db.session.scalars(select(OutboxMessage)).one()
    assert open_message(message).recipient == CANARIES["email"]

    # Resumable and idempotent: a second run has nothing left to do.
    again = runner.invoke(args=["keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert "customer 0, exposure 0, kept_act 0, outbox_message 0" in again.output
    assert "Nothing is sealed with an older key" in again.output


def test_a_value_sealed_with_a_removed_key_is_refused_clearly(app, canary):
    vault.load_keys([new_data_key()])
    db.session.expire_all()
    customer = db.session.scalars(select(Customer)).one()
    with pytest.raises(DecryptionError, match="no longer configured"):
        _ = customer.email


@pytest.mark.parametrize("bad", ["short", "!!!!", ""])
def test_malformed_data_keys_are_refused(bad):
    with pytest.raises(ValueError):
        DataVault([bad])


def test_every_seal_uses_a_fresh_nonce_even_across_threads():
    import threading

    from portal.crypto import HEADER_SIZE

    local = DataVault([new_data_key()])
    nonces: list[bytes] = []
    lock = threading.Lock()

    def work():
        mine = [local.seal("same value", "ctx")[5:HEADER_SIZE] for _ in range(6000)]
        with lock:
            nonces.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(nonces) == 24000 and len(set(nonces)) == 24000


def test_a_forked_process_never_draws_its_parents_nonces():
    # gunicorn makes the app once and forks its workers from it (preload_app): a nonce pool
    # drawn before the fork, copied into every child, would repeat nonces under one key.
    import os

    from portal.crypto import HEADER_SIZE

    local = DataVault([new_data_key()])
    local.seal("drawn before the fork", "ctx")  # the pool now holds 4,095 unused nonces
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
        try:
            os.write(writing, b"".join(local.seal("v", "ctx")[5:HEADER_SIZE] for _ in range(50)))
        finally:
            os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    with os.fdopen(reading, "rb") as pipe:
        drawn = pipe.read()
    in_child = {drawn[n : n + 12] for n in range(0, len(drawn), 12)}
    in_parent = {local.seal("v", "ctx")[5:HEADER_SIZE] for _ in range(50)}
    assert len(in_child) == 50 and not in_child & in_parent


# A digest made by the portal before the bulk path existed (hmac.new, copied per use), for a
# fixed key: rows indexed by older code must still be found.
FIXED_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


def test_blind_indexes_are_the_ones_earlier_versions_stored():
    fixed = DataVault([FIXED_KEY])
    assert fixed.blind_index("ann@example.com", "email").hex() == (
        "5bcec9b55a7a54bba09186be18f4b1ef"
    )
    bulk = fixed.bulk()
    assert bulk.index("+14155550100", b"phone\x00").hex() == "aee6e3638c873298cdd293a08aa02d8b"


def test_bulk_indexes_are_the_vaults_for_any_key_and_value():
    local = DataVault([new_data_key()])
    bulk = local.bulk()
    values = ["", "ann@example.com", "José Ñúñez", "x" * 200, "+14155550100"]

    for value in values:
        for purpose in ("email", "name", "phone"):
            expected = local.blind_index(value, purpose)
            assert bulk.index(value, purpose.encode() + b"\x00") == expected
            assert bulk.index(value, purpose.encode() + b"\x00") == expected  # states reused


def test_bulk_seals_open_as_any_seal_and_only_in_their_place():
    local = DataVault([new_data_key()])
    bulk = local.bulk()

    sealed = bulk.seal("José".encode(), b"customer.name.abc")

    assert local.open(sealed, "customer.name.abc") == "José"
    assert bulk.open(local.seal("x", "customer.email.abc"), b"customer.email.abc") == b"x"
    with pytest.raises(DecryptionError):
        local.open(sealed, "customer.name.abd")
    nonces = {bulk.seal(b"same", b"ctx")[5:17] for _ in range(5000)}
    assert len(nonces) == 5000


def test_bulk_opens_what_any_key_sealed_and_refuses_what_does_not_belong():
    old, new = new_data_key(), new_data_key()
    before = DataVault([old])
    rotating = DataVault([new, old])
    bulk = rotating.bulk()
    sealed_before = before.seal("4242", "exposure.fragment.abc")

    # A value sealed before a rotation still opens, by the key its header names.
    assert bulk.open(sealed_before, b"exposure.fragment.abc") == b"4242"
    assert bulk.open(bulk.seal(b"x", b"ctx"), b"ctx") == b"x"
    for blob, context in [
        (sealed_before, b"exposure.fragment.abd"),  # another row's place
        (sealed_before[:-1] + bytes([sealed_before[-1] ^ 1]), b"exposure.fragment.abc"),
        (b"\x02" + sealed_before[1:], b"exposure.fragment.abc"),  # not this format
        (sealed_before[:10], b"exposure.fragment.abc"),  # too short
    ]:
        with pytest.raises(DecryptionError):
            bulk.open(blob, context)
    with pytest.raises(DecryptionError):  # a key no longer configured
        DataVault([new]).bulk().open(sealed_before, b"exposure.fragment.abc")
