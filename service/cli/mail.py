"""`conveyor mail`: the emails caught by the local mail sink of `conveyor up`.

With no SMTP_URL, `conveyor up` writes each email its worker sends into `mail/` in its
data directory instead of sending it; this lists them, newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from service.cli.options import data_dir_option, json_option
from service.cli.output import CliError, emit_json, guarded, new_table, stdout

MAIL_DIR = "mail"

EXAMPLES = """Examples:

  conveyor mail

  conveyor mail --json"""


def sink_url(data_dir: Path) -> str:
    """The SMTP_URL of the mail sink kept in `data_dir`."""
    return f"file://{(data_dir / MAIL_DIR).resolve()}"


def caught(directory: Path) -> list[dict]:
    """The messages in the sink, newest first."""
    import email
    import email.policy

    messages = []
    for path in directory.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        messages.append(
            {
                "sent_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds"),
                "to": str(message["To"]),
                "subject": str(message["Subject"]),
                "text": body.get_content() if body else "",
                "file": str(path),
            }
        )
    return sorted(messages, key=lambda message: message["sent_at"], reverse=True)


@click.command("mail", epilog=EXAMPLES)
@data_dir_option
@json_option
@guarded
def command(data_dir: Path, json_output: bool) -> None:
    """List the emails `conveyor up` caught instead of sending (it runs without SMTP_URL)."""
    directory = data_dir.expanduser() / MAIL_DIR
    if not directory.is_dir():
        raise CliError(f"no mail caught in {directory}: `conveyor up` keeps emails there when SMTP_URL is unset")
    messages = caught(directory)
    if json_output:
        emit_json(messages)
        return
    table = new_table("sent", "to", "subject", "file")
    for message in messages:
        table.add_row(message["sent_at"], message["to"], message["subject"], message["file"])
    stdout().print(table)
