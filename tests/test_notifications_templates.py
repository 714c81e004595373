import pytest

from pipelines.notifications.templates import TEMPLATES, render_email, render_short, validate
from service.errors import PermanentError

CONTRACT_TEMPLATES = {
    "welcome",
    "password_reset",
    "payment_receipt",
    "job_application",
    "appointment_confirmation",
    "appointment_reminder",
    "membership_expiry",
}

EXAMPLES = {
    "welcome": {"name": "Ada", "login_url": "https://app.example.com/login", "product_name": "Acme"},
    "password_reset": {"name": "Ada", "reset_url": "https://app.example.com/reset?t=abc&u=1", "expires_in_minutes": 30},
    "payment_receipt": {
        "name": "Ada",
        "amount": "59.00",
        "currency": "EUR",
        "receipt_number": "R-2026-0042",
        "paid_at": "3 May 2026",
        "payment_method": "Visa ending 4242",
        "items": [{"description": "Pro plan", "amount": "49.00"}, {"description": "Extra seat", "amount": "10.00"}],
        "receipt_url": "https://app.example.com/receipts/42",
    },
    "job_application": {"name": "Ada", "job_title": "Data Engineer", "company": "Acme", "reference": "JA-7"},
    "appointment_confirmation": {
        "name": "Ada",
        "starts_at": "Tue 5 May, 14:30",
        "location": "12 High St",
        "provider": "Dr. Rivera",
    },
    "appointment_reminder": {
        "name": "Ada",
        "starts_at": "Tue 5 May, 14:30",
        "manage_url": "https://app.example.com/a/9",
    },
    "membership_expiry": {
        "name": "Ada",
        "expires_on": "31 May 2026",
        "plan": "Gold",
        "renew_url": "https://app.example.com/renew",
    },
}

# One value per template that must appear in every rendering of it.
CHARACTERISTIC = {
    "welcome": "Welcome",
    "password_reset": "https://app.example.com/reset?t=abc",
    "payment_receipt": "R-2026-0042",
    "job_application": "Data Engineer",
    "appointment_confirmation": "Tue 5 May, 14:30",
    "appointment_reminder": "Tue 5 May, 14:30",
    "membership_expiry": "31 May 2026",
}


def test_the_contract_templates_are_registered_with_examples():
    assert CONTRACT_TEMPLATES <= set(TEMPLATES)
    assert set(EXAMPLES) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_template_renders_subject_text_html_and_short(name):
    email = render_email(name, EXAMPLES[name])
    short = render_short(name, EXAMPLES[name])
    assert email.subject and "\n" not in email.subject and "{" not in email.subject
    assert EXAMPLES[name]["name"] in email.text and EXAMPLES[name]["name"] in email.html
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert "<" not in email.text and "{{" not in email.text and "\n\n\n" not in email.text
    assert short.title == email.subject and "\n" not in short.body
    if name != "welcome":
        assert CHARACTERISTIC[name] in email.subject + email.text
    assert CHARACTERISTIC[name].replace("&", "&amp;") in email.html or CHARACTERISTIC[name] in email.subject


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_template_renders_with_only_its_required_fields(name):
    required = {key: value for key, value in EXAMPLES[name].items() if TEMPLATES[name].all_fields[key].required}
    email = render_email(name, required)
    assert "None" not in email.text and "None" not in email.html


def test_hostile_data_is_escaped_in_html_but_readable_in_text():
    hostile = '<script>alert("x")</script> & <b>bold</b>'
    email = render_email("welcome", {"name": hostile})
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html and "&amp; &lt;b&gt;" in email.html
    assert hostile in email.text


def test_payment_receipt_lists_items_and_total():
    email = render_email("payment_receipt", EXAMPLES["payment_receipt"])
    assert "- Pro plan: 49.00 EUR" in email.text and "Total: 59.00 EUR" in email.text
    assert "Payment method: Visa ending 4242" in email.text


@pytest.mark.parametrize(
    ("template", "data", "mentioned"),
    [
        ("password_reset", {"name": "Ada"}, "'reset_url'"),
        ("welcome", {}, "'name'"),
        ("welcome", {"name": ""}, "'name'"),
        ("password_reset", {"name": "Ada", "reset_url": "javascript:alert(1)"}, "http(s) URL"),
        ("password_reset", {"name": "Ada", "reset_url": "https://x.test", "expires_in_minutes": "soon"}, "number"),
        ("welcome", {"name": {"first": "Ada"}}, "string or a number"),
        ("welcome", {"name": "x" * 2001}, "longer than"),
        ("payment_receipt", {**EXAMPLES["payment_receipt"], "items": [{"description": "x"}]}, "description and amount"),
    ],
)
def test_invalid_data_is_a_permanent_invalid_template_data_error(template, data, mentioned):
    with pytest.raises(PermanentError) as caught:
        validate(template, data)
    assert caught.value.type == "invalid_template_data"
    assert mentioned in caught.value.message


def test_data_may_carry_keys_the_template_does_not_use():
    """One context may serve several templates: what a template does not use is left out."""
    assert validate("welcome", {"name": "Ada", "colour": "red"})["name"] == "Ada"
    assert "colour" not in validate("welcome", {"name": "Ada", "colour": "red"})
    assert "Ada" in render_email("welcome", {"name": "Ada", "order": {"id": 7}}).text


def test_data_must_be_an_object():
    with pytest.raises(PermanentError) as caught:
        validate("welcome", ["Ada"])
    assert caught.value.type == "invalid_template_data"


def test_unknown_template_names_the_known_ones():
    with pytest.raises(PermanentError) as caught:
        render_email("birthday", {"name": "Ada"})
    assert caught.value.type == "unknown_template"
    assert "welcome" in caught.value.message


def test_validate_fills_absent_optionals_with_none():
    assert validate("welcome", {"name": "Ada"}) == {
        "name": "Ada",
        "login_url": None,
        "product_name": None,
        "support_email": None,
    }
