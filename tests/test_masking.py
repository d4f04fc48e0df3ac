"""Credentials are masked in every shape a URL or a log line can carry them."""

from __future__ import annotations

from services import PG_PASSWORD_SPELLINGS, PG_PASSWORD_URL
from working.runtime.masking import mask_text, mask_url


def test_a_url_password_is_masked_in_free_text_even_when_never_registered() -> None:
    # An error message quoting a URL whose password the settings never saw (e.g. a driver's).
    line = f"could not connect to postgresql://app:{PG_PASSWORD_URL}@db:5432/app: refused"
    masked = mask_text(line)
    assert masked == "could not connect to postgresql://app:***@db:5432/app: refused"


def test_a_percent_encoded_password_is_masked_in_a_url() -> None:
    masked = mask_url(f"postgresql://app:{PG_PASSWORD_URL}@db:5432/app")
    assert masked == "postgresql://app:***@db:5432/app"
    for spelling in PG_PASSWORD_SPELLINGS:
        assert spelling not in masked


def test_password_and_token_parameters_are_masked() -> None:
    assert mask_text("host=db password=hunter22 user=app") == "host=db password=*** user=app"
    assert mask_text("GET /_event/?token=abc123&EIO=4") == "GET /_event/?token=***&EIO=4"
