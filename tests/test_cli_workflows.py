"""`conveyor workflows …` against a real API, PostgreSQL, Redis and worker: submit a
workflow from a file and wait for it, list, show (by an id's start) and cancel."""

from __future__ import annotations

import json

from testkit.service import client, running_worker
from tests.test_cli import assert_no_traceback, conveyor
from tests.test_cli_ops import WIDE
from tests.test_kinds import sample_pipelines
from tests.test_workflows import finished, kinds_published

STEPS = {
    "first": {"kind": "echo", "input": {"items": [1, 2]}},
    "each": {"kind": "echo", "input": {}, "for_each": {"$from": "first", "pointer": "/items"}, "after": ["first"]},
}


async def test_workflows_submit_wait_list_show_and_cancel(api, settings, tenant, tmp_path):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1], **WIDE}
    body, failing, held = tmp_path / "ok.json", tmp_path / "failing.json", tmp_path / "held.json"
    body.write_text(json.dumps({"steps": STEPS, "metadata": {"ref": 7}}))
    failing.write_text(json.dumps({"steps": {"bad": {"kind": "echo", "input": {"fail_unless": str(tmp_path / "no")}}}}))
    held.write_text(json.dumps({"steps": {"hold": {"kind": "echo", "input": {"gate": str(tmp_path / "no")}}}}))
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        submitted = await conveyor("workflows", "submit", str(body), "--wait", **env)
        failed = await conveyor("workflows", "submit", str(failing), "--wait", **env)
        holding = await conveyor("workflows", "submit", str(held), **env)
        holding_id = holding.stdout.strip()
        cancelled = await conveyor("workflows", "cancel", holding_id[:8], **env)
        ended = await finished(http, holding_id)
        listed = await conveyor("workflows", "list", "--json", **env)
        table = await conveyor("workflows", "list", "--status", "succeeded", **env)
        workflow_id = submitted.stdout.splitlines()[0]
        shown = await conveyor("workflows", "show", workflow_id[:8], **env)
        shown_json = await conveyor("workflows", "show", workflow_id, "--json", **env)
        api_json = (await http.get(f"/v1/workflows/{workflow_id}")).json()
    assert submitted.exit_code == 0, submitted.output
    assert "each" in submitted.stdout and "succeeded" in submitted.stdout
    assert failed.exit_code == 1 and "failed" in failed.output
    assert cancelled.exit_code == 0 and cancelled.stdout.startswith(holding_id), cancelled.output
    assert ended["status"] == "cancelled"
    assert [item["id"] for item in json.loads(listed.stdout)["items"]][-1] == workflow_id
    assert workflow_id[:8] in table.stdout and "2/2 succeeded" in table.stdout and holding_id[:8] not in table.stdout
    assert shown.exit_code == 0 and "succeeded" in shown.stdout and "first" in shown.stdout, shown.output
    assert json.loads(shown_json.stdout) == api_json


async def test_workflows_commands_refuse_bad_files_and_unknown_ids_in_one_line(api, tenant, tmp_path):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1]}
    not_json, no_steps = tmp_path / "a.json", tmp_path / "b.json"
    not_json.write_text("{steps")
    no_steps.write_text(json.dumps({"step": {}}))
    answers = [
        await conveyor("workflows", "submit", str(not_json), **env),
        await conveyor("workflows", "submit", str(no_steps), **env),
        await conveyor("workflows", "show", "abcd", **env),
        await conveyor("workflows", "cancel", "00000000-0000-0000-0000-000000000000", **env),
    ]
    for answer in answers:
        assert_no_traceback(answer)
        assert answer.output.startswith("error:") and answer.output.count("\n") == 1, answer.output
    assert [answer.exit_code for answer in answers] == [2, 2, 1, 1]
    assert "no such workflow" in answers[3].output
