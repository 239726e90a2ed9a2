"""Personal data sealed per account (AES-256-GCM under a data key per account, wrapped by
the master key): what opens and what does not, rotation, and the master key's setting."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.db.sealing import (
    SealError,
    key_id_of,
    new_data_key,
    open_sealed,
    rewrap,
    seal,
    unwrap,
    wrap,
)
from worker.errors import ConfigError
from worker.settings import Settings, parse_master_key

MASTER = os.urandom(32)


@given(st.text())
def test_any_text_comes_back_as_it_went_in(value: str) -> None:
    key = new_data_key()
    assert open_sealed(key, "recipient", seal(key, "k1", "recipient", value)) == value


def test_a_sealed_value_names_its_key_and_opens_only_as_its_field_under_its_key() -> None:
    key = new_data_key()
    sealed = seal(key, "k1", "recipient", "zhang.wei@example.com")
    assert key_id_of(sealed) == "k1" and sealed.startswith("sealed:v1:k1:")
    assert "zhang" not in sealed and sealed != seal(key, "k1", "recipient", "zhang.wei@example.com")
    for text, field, other_key in ((sealed, "payload", key), (sealed, "recipient", new_data_key()),
                                   (sealed.replace(":k1:", ":k2:"), "recipient", key)):
        with pytest.raises(SealError):
            open_sealed(other_key, field, text)
    altered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SealError):
        open_sealed(key, "recipient", altered)


def test_rotating_the_master_key_rewraps_data_keys_and_every_value_still_opens() -> None:
    key = new_data_key()
    wrapped = wrap(MASTER, "k1", key)
    sealed = seal(key, "k1", "name", "张伟")
    with pytest.raises(SealError):
        unwrap(MASTER, "k2", wrapped)  # a wrapped key is bound to its id
    new_master = os.urandom(32)
    rewrapped = rewrap(MASTER, new_master, "k1", wrapped)
    assert open_sealed(unwrap(new_master, "k1", rewrapped), "name", sealed) == "张伟"
    with pytest.raises(SealError):
        unwrap(MASTER, "k1", rewrapped)  # the old master key opens nothing new


@pytest.mark.parametrize(("text", "says"), [("not base64!", "not base64"),
                                            (base64.b64encode(b"short").decode(), "5 bytes; 32")])
def test_a_bad_master_key_is_refused_naming_the_variable(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_master_key(text)
    with pytest.raises(ConfigError, match=f"DUNNING_MASTER_KEY: {says}"):
        Settings.from_env({"DUNNING_MASTER_KEY": text})


def test_the_master_key_is_read_and_never_shown() -> None:
    text = base64.b64encode(MASTER).decode()
    settings = Settings.from_env({"DUNNING_MASTER_KEY": text})
    assert settings.master_key == MASTER and text not in repr(settings)
