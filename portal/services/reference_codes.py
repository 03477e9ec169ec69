"""Reference codes for paper letters: unambiguous characters, grouped, with a check character."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L or U: nothing a reader can mistake for something else.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY_LENGTH = 11  # plus one check character: 12, printed as three groups of four
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def check_character(body: str) -> str:
    """Luhn mod N over the alphabet: catches any single wrong character and most swaps."""
    n = len(ALPHABET)
    factor, total = 2, 0
    for ch in reversed(body):
        addend = factor * _VALUE[ch]
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


def generate() -> str:
    """A new random code in stored form (12 characters, no dashes)."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return body + check_character(body)


def generate_many(count: int) -> list[str]:
    """count new random codes, as generate() makes them, from one read of the OS's CSPRNG.

    A campaign needs a million: secrets.choice per character cost more than all else per notice.
    Each byte below 240 (8 x 30) gives one character without bias; the rest are skipped.
    """
    codes: list[str] = []
    while len(codes) < count:
        usable = [
            ALPHABET[b % len(ALPHABET)]
            for b in secrets.token_bytes(16 * (count - len(codes)))
            if b < 240
        ]
        for start in range(0, len(usable) - BODY_LENGTH + 1, BODY_LENGTH):
            body = "".join(usable[start : start + BODY_LENGTH])
            codes.append(body + check_character(body))
            if len(codes) == count:
                break
    return codes


def display(code: str) -> str:
    """The printed form: ABCD-EFGH-JKMN."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalise(typed: str) -> str:
    """What a person typed, in stored form: case, spaces and dashes ignored."""
    return "".join(ch for ch in typed.upper() if ch not in " -\t")


def is_well_formed(code: str) -> bool:
    """True when a stored-form code has the right length, alphabet and check character."""
    return (
        len(code) == BODY_LENGTH + 1
        and all(ch in _VALUE for ch in code)
        and check_character(code[:-1]) == code[-1]
    )
