"""What `conveyor up` prints once every dependency answered: where things are, which tools
and channels work, the dashboard and the API key, and a command to try."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pipelines.notifications.channels import require_channel
from pipelines.system_tools import probe_tools
from service.cli.local import API_KEY_FILE, DEFAULT_TENANT
from service.cli.output import stdout
from service.cli.samples import samples_dir
from service.config import Settings, mask
from service.errors import PermanentError


def _tools_line() -> str:
    parts = []
    for name, check in probe_tools().items():
        if check["status"] != "pass":
            parts.append(f"{name} MISSING ({check['output']})")
        else:
            parts.append(f"{name} ok" + (f" ({', '.join(check['languages'])})" if check.get("languages") else ""))
    return ", ".join(parts)


def _channels_lines(settings: Settings) -> list[str]:
    if settings.smtp_url and settings.smtp_url.startswith("file://"):
        email = (
            f"caught in {urlsplit(settings.smtp_url).path}, not sent (`conveyor mail` lists them; set SMTP_URL to send)"
        )
    else:
        email = f"sent through {mask(settings.smtp_url)}" if settings.smtp_url else "off (set SMTP_URL)"
    hosts = ",".join(settings.callback_allowed_hosts) or "none"
    lines = [f"  email      {email}", f"  callbacks  webhooks may reach private hosts: {hosts}"]
    for channel in ("sms", "push"):
        try:
            require_channel(settings, channel)
            lines.append(f"  {channel:<9}  configured")
        except PermanentError as missing:  # its message says what to set
            lines.append(f"  {channel:<9}  off ({missing.message.partition(': ')[2]})")
    return lines


def announce(settings: Settings, url: str, key: str, data_dir: Path) -> None:
    console = stdout()
    console.print(f"[bold green]Conveyor is up[/] at [bold]{url}[/]")
    lines = [
        f"  database   {mask(settings.database_url)}",
        f"  redis      {settings.redis_url}",
        f"  storage    {settings.storage_url}",
        f"  data dir   {data_dir}",
        f"  tools      {_tools_line()}",
        *_channels_lines(settings),
        f"Dashboard: {url}/dashboard (admin key: {settings.admin_key.get_secret_value() if settings.admin_key else 'off'})",
        f"API key for tenant {DEFAULT_TENANT!r} (kept in {data_dir / API_KEY_FILE}; --new-key makes another):",
    ]
    for line in lines:
        console.print(line, markup=False)
    console.print(key, markup=False)
    sample = samples_dir() / "resume.pdf"
    console.print("Try (samples: `conveyor samples`):", markup=False)
    console.print(f'  curl -H "Authorization: Bearer {key}" -F file=@{sample} {url}/v1/documents', markup=False)
    console.print(f"  CONVEYOR_URL={url} CONVEYOR_API_KEY={key} conveyor submit {sample} --wait", markup=False)
    console.print("Ctrl-C stops it.", markup=False)
    console.file.flush()
