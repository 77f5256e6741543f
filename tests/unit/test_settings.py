"""Settings: defaults, precedence (flags > environment > TOML file) and validation."""

import pytest

from segmentation.errors import ConfigurationError
from segmentation.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "SEGMENT_CONFIG", "SEGMENT_FEATURES", "SEGMENT_K", "SEGMENT_K_MAX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_income_and_spending_with_k_from_2_to_10():
    settings = load_settings()
    assert settings.features == ["annual_income_k", "spending_score"]
    assert (settings.k_min, settings.k_max, settings.k) == (2, 10, None)
    assert settings.schedule_cron == "0 2 * * *"
    assert settings.database_url is None


def test_environment_overrides_the_toml_file_and_flags_override_both(monkeypatch, tmp_path):
    config = tmp_path / "segment.toml"
    config.write_text('features = ["age", "spending_score"]\nk_max = 6\nrandom_state = 1\n')
    monkeypatch.setenv("SEGMENT_K_MAX", "8")
    settings = load_settings()
    assert settings.features == ["age", "spending_score"]  # from the file
    assert settings.k_max == 8  # environment beats the file
    assert load_settings(k_max=7).k_max == 7  # a flag beats both


def test_features_accept_a_comma_separated_environment_variable(monkeypatch):
    monkeypatch.setenv("SEGMENT_FEATURES", "age, gender,spending_score")
    assert load_settings().features == ["age", "gender", "spending_score"]


def test_database_url_is_read_from_the_plain_environment_variable(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example/segments")
    assert load_settings().database_url == "postgresql://someone@db.example/segments"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": "income"}, "'income' is not a declared column"),
        ({"k_min": 6, "k_max": 3}, "k_min (6) is larger than k_max (3)"),
        ({"k": 1}, "greater than or equal to 2"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"schedule_cron": "every night"}, "invalid cron expression"),
        ({"database_url": "sqlite:///x.db"}, "must start with postgresql://"),
        ({"scaling": "log"}, "scaling"),
    ],
)
def test_bad_settings_fail_before_any_work_with_one_line(overrides, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_settings(**overrides)
    assert "\n" not in str(caught.value)


def test_a_named_config_file_that_does_not_exist_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMENT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match="missing.toml"):
        load_settings()


def test_redact_hides_passwords_but_not_empty_ones():
    from segmentation.db import redact

    assert redact("failed: postgresql://ann:s3cr%40t@db:5432/x") == "failed: postgresql://ann:***@db:5432/x"
    assert redact("postgresql://postgres:@/postgres?host=/tmp") == "postgresql://postgres:@/postgres?host=/tmp"
