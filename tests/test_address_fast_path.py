"""The fast path for plain ASCII addresses gives exactly email-validator's verdict and
normalization: over a corpus of ordinary addresses and of fuzzed ones built to sit on every
edge (dots, hyphens, case, lengths at the limits, special-use and punycode domains)."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from review_press.store.model import Address, _plain, parse_address

EDGES = [
    "Ann.B+news@Example.ORG",
    "a@b.co",
    "-dash@x-y.org",
    "+plus@x.org",
    "under_score@sub.domain.example.com",
    "a..b@x.org",
    ".a@x.org",
    "a.@x.org",
    "a@-x.org",
    "a@x-.org",
    "a@x..org",
    "a@x.org.",
    "a@.x.org",
    "a@x.o",
    "a@x.c0m",
    "a@x.123",
    "a@localhost",
    "a@x.test",
    "a@x.localhost",
    "a@x.onion",
    "a@mytest.org",
    "a@x.invalid",
    "a@xn--bcher-kva.de",
    "a@ab--cd.org",
    "a@" + "x" * 63 + ".org",
    "a@" + "x" * 64 + ".org",
    "x" * 64 + "@x.org",
    "x" * 65 + "@x.org",
    "a@" + ".".join(["x" * 60] * 4) + ".org",
    "a@" + ".".join(["x" * 49] * 5) + ".org",
    "a@b@c.org",
    "a@",
    "@x.org",
    "a b@x.org",
    "a@x_y.org",
    "a!#$%&'*+/=?^_`{|}~@x.org",
    "zoë@x.org",
    "a@bücher.de",
    "ABC@EXAMPLE.COM",
]
ALPHABET = "abcXYZ019._+-@!#%"


def _fuzzed(n: int) -> list[str]:
    rng = random.Random(13)
    out = []
    for _ in range(n):
        local = "".join(rng.choice(ALPHABET[:-5] if rng.random() < 0.8 else ALPHABET) for _ in range(rng.randint(0, 70)))
        labels = ["".join(rng.choice("abcz09-") for _ in range(rng.randint(0, 66))) for _ in range(rng.randint(1, 5))]
        tld = rng.choice(["org", "com", "io", "c0m", "x", "test", "local", "xn--p1ai", "museum", ""])
        out.append(f"{local}@{'.'.join([*labels, tld])}")
    return out


def _slow(text: str) -> Address | str:
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return "refused"
    envelope = info.ascii_email or f"{info.local_part}@{info.ascii_domain}"
    return Address(info.normalized, envelope, f"{info.local_part.casefold()}@{info.ascii_domain.lower()}")


CORPUS = EDGES + [f"reader{i}@example.com" for i in range(0, 1000, 37)] + _fuzzed(20000)


def test_the_fast_path_agrees_with_email_validator_wherever_it_answers() -> None:
    answered = 0
    for text in CORPUS:
        fast = _plain(text)
        if fast is not None:
            answered += 1
            assert _slow(text) == fast, text
    assert answered > 500  # it does take the common case (about 650 of the fuzzed addresses are plain and valid)


@pytest.mark.parametrize("text", EDGES)
def test_parse_address_has_one_verdict_whichever_path_it_takes(text: str) -> None:
    expected = _slow(text.strip())
    try:
        got: Address | str = parse_address(text)
    except ValueError:
        got = "refused"
    assert got == expected
