// Keeps the server-rendered dashboard live: polls its JSON every 2 s and redraws the
// parts that change (a workflow's graph is drawn by the server: only its colours change);
// runs retry and cancel. No dependencies, nothing from a CDN.
"use strict";

const POLL_MS = 2000;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

const percent = (value) => `${(value * 100).toFixed(1)}%`;
const seconds = (value) => `${value.toFixed(1)} s`;
const statusBadge = (status) => el("span", { class: `status status-${status}` }, status);
// A time to the second, as the server renders it; the full value in its title.
const toSecond = (iso) => (iso ? `${iso.slice(0, 19).replace("T", " ")} UTC` : "");
const when = (iso) => el("time", iso ? { datetime: iso, title: iso } : {}, toSecond(iso));
const jobLink = (id) => el("a", { href: `/dashboard/jobs/${id}` }, el("code", {}, id.slice(0, 8)));

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

function fillRows(tbody, items, render, emptyText, columns) {
  const rows = items.length ? items.map(render) : [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))];
  tbody.replaceChildren(...rows);
}

function jobRow(job, withError) {
  const row = el("tr", { "data-job-id": job.id },
    el("td", {}, jobLink(job.id)), el("td", {}, job.tenant), el("td", {}, job.kind), el("td", {}, statusBadge(job.status)));
  if (withError) row.append(el("td", { class: "error-type" }, job.error ? job.error.type : ""));
  row.append(el("td", {}, percent(job.progress)), el("td", {}, job.stage || ""), el("td", {}, job.attempts),
    el("td", {}, when(job.created_at)));
  return row;
}

function queueRow(queue) {
  return el("tr", { "data-queue": queue.name }, el("td", {}, queue.name),
    el("td", { class: "queued" }, queue.queued), el("td", { class: "running" }, queue.running),
    el("td", { class: "scheduled" }, queue.scheduled), el("td", { class: "oldest" }, seconds(queue.oldest_age)));
}

function workerRow(worker) {
  const jobs = el("td", {});
  for (const id of worker.jobs) jobs.append(jobLink(id), " ");
  return el("tr", { "data-worker": worker.id }, el("td", {}, el("code", {}, worker.id)), el("td", {}, worker.queue),
    el("td", {}, `${seconds(worker.heartbeat_age)} ago`), el("td", {}, `${worker.up_seconds} s`), jobs);
}

function scheduleRow(schedule) {
  return el("tr", { "data-schedule": schedule.id }, el("td", {}, schedule.name), el("td", {}, schedule.tenant),
    el("td", {}, schedule.kind), el("td", {}, `${schedule.cadence} (${schedule.timezone})`),
    el("td", { class: "next-run" }, schedule.paused ? "paused" : when(schedule.next_run_at)),
    el("td", {}, when(schedule.last_run_at)), el("td", {}, schedule.last_status || ""));
}

function workflowRow(workflow) {
  return el("tr", { "data-workflow-id": workflow.id },
    el("td", {}, el("a", { href: `/dashboard/workflows/${workflow.id}` }, el("code", {}, workflow.id.slice(0, 8)))),
    el("td", {}, workflow.tenant), el("td", {}, statusBadge(workflow.status)),
    el("td", { class: "steps" }, workflow.steps), el("td", {}, when(workflow.created_at)),
    el("td", {}, when(workflow.finished_at)));
}

function renderOverview(data) {
  setText("hour-finished", data.hour.finished);
  setText("hour-per-minute", data.hour.per_minute);
  setText("hour-failure-rate", percent(data.hour.failure_rate));
  setText("hour-failed", data.hour.failed);
  setText("hour-succeeded", data.hour.succeeded);
  setText("workers-count", data.workers.length);
  fillRows(document.querySelector("#queues tbody"), data.queues, queueRow, "No queues", 5);
  fillRows(document.querySelector("#workers tbody"), data.workers, workerRow, "No worker has a fresh heartbeat", 5);
  fillRows(document.querySelector("#recent tbody"), data.recent, jobRow, "No jobs", 8);
  fillRows(document.querySelector("#failed tbody"), data.failed, (job) => jobRow(job, true), "No jobs", 9);
  fillRows(document.querySelector("#schedules tbody"), data.schedules, scheduleRow, "No schedules", 7);
  fillRows(document.querySelector("#workflows tbody"), data.workflows, workflowRow, "No workflows", 6);
}

function stepJobs(step) {
  const cell = el("td", { class: "jobs" });
  for (const id of step.jobs) cell.append(jobLink(id), " ");
  if (step.job_count > step.jobs.length) cell.append(`and ${step.job_count - step.jobs.length} more`);
  return cell;
}

function renderWorkflow(workflow) {
  const status = document.getElementById("workflow-status");
  status.textContent = workflow.status;
  status.className = `status status-${workflow.status}`;
  document.getElementById("workflow-finished").replaceChildren(when(workflow.finished_at));
  for (const step of workflow.steps) {
    const node = document.querySelector(`#workflow-graph g[data-step="${CSS.escape(step.name)}"]`);
    if (node) {
      node.setAttribute("class", `node status-${step.status}`);
      node.querySelector(".node-status").textContent = step.status;
      node.querySelector("title").textContent = `${step.name} (${step.kind}): ${step.status}`;
    }
  }
  fillRows(document.querySelector("#steps tbody"), workflow.steps, (step) => el("tr", { "data-step": step.name },
    el("td", {}, step.name), el("td", {}, step.kind), el("td", {}, step.after.join(", ")),
    el("td", {}, statusBadge(step.status)), stepJobs(step),
    el("td", { class: "error-type" }, step.error ? step.error.message : "")), "No steps", 6);
}

function stageItem(stage) {
  return el("li", { class: `stage status-${stage.status}`, "data-stage": stage.name },
    el("strong", {}, stage.name), " ", statusBadge(stage.status), " ",
    when(stage.started_at), " \u2192 ", when(stage.finished_at));
}

function showBox(boxId, preId, value) {
  document.getElementById(boxId).hidden = !value;
  setText(preId, value ? JSON.stringify(value, null, 2) : "");
}

function renderMedia(media) {
  document.getElementById("job-media").hidden = !media;
  const thumbnail = document.getElementById("job-thumbnail");
  const src = media && media.thumbnail;
  thumbnail.hidden = !src;
  if (src && thumbnail.getAttribute("src") !== src) thumbnail.setAttribute("src", src);
  const items = ((media && media.renditions) || []).map((rendition) => el("li", {},
    el("a", { href: rendition.url }, rendition.name), ` ${rendition.width}\u00d7${rendition.height}, ${rendition.bytes} bytes`));
  document.getElementById("job-renditions").replaceChildren(...items);
}

function renderJob(job) {
  const status = document.getElementById("job-status");
  status.textContent = job.status;
  status.className = `status status-${job.status}`;
  setText("job-progress", percent(job.progress));
  setText("job-stage", job.stage || "");
  setText("job-attempts", job.attempts);
  document.getElementById("job-finished").replaceChildren(when(job.finished_at));
  showBox("job-error-box", "job-error", job.error);
  showBox("job-result-box", "job-result", job.result);
  renderMedia(job.media);
  const timeline = document.getElementById("timeline");
  if (job.stages.length) timeline.replaceChildren(...job.stages.map(stageItem));
  document.getElementById("retry").disabled = !["failed", "cancelled"].includes(job.status);
  document.getElementById("cancel").disabled = !["queued", "running"].includes(job.status);
}

async function fetchJson(url, options) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
  if (response.status === 401) {
    window.location.assign("/dashboard/login");
    return null;
  }
  const body = await response.json();
  return { ok: response.ok, body };
}

function poll(url, render) {
  const live = document.getElementById("live");
  async function tick() {
    try {
      const answer = await fetchJson(url);
      if (answer && answer.ok) render(answer.body);
      if (live) live.classList.toggle("stale", !(answer && answer.ok));
    } catch (error) {
      if (live) live.classList.add("stale");
    }
    window.setTimeout(tick, POLL_MS);
  }
  window.setTimeout(tick, POLL_MS);
  return tick;
}

function setUpJobActions(jobId, refresh) {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const answer = await fetchJson(`/dashboard/api/jobs/${jobId}/${button.dataset.action}`, {
        method: "POST",
        headers: { Accept: "application/json", "X-Conveyor-Dashboard": "1" },
      });
      if (answer) setText("action-result", answer.ok ? `${button.dataset.action}: accepted` : answer.body.detail);
      refresh();
    });
  }
}

// A button acting on every job the overview's filters match (`action` is its route); with
// `confirmVerb`, the jobs are counted first (a dry run) and the count is confirmed.
function setUpBulkAction(action, pastTense, refresh, confirmVerb) {
  const button = document.getElementById(action);
  const post = (dryRun) => {
    const params = new URLSearchParams(window.location.search);
    if (dryRun) params.set("dry_run", "1");
    return fetchJson(`/dashboard/api/jobs/${action}?${params}`, {
      method: "POST",
      headers: { Accept: "application/json", "X-Conveyor-Dashboard": "1" },
    });
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    let answer = null;
    if (confirmVerb) {
      const count = await post(true);
      if (count && count.ok && window.confirm(`${confirmVerb} ${count.body.matched} jobs?`)) answer = await post(false);
      else if (count && !count.ok) answer = count;
    } else {
      answer = await post(false);
    }
    if (answer) {
      setText(`${action}-result`, answer.ok ? `${answer.body.changed} of ${answer.body.matched} ${pastTense}` : answer.body.detail);
    }
    button.disabled = false;
    refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") {
    const refresh = poll(`/dashboard/api/overview${window.location.search}`, renderOverview);
    setUpBulkAction("retry-failed", "retried", refresh);
    setUpBulkAction("cancel-unfinished", "cancelled", refresh, "Cancel");
  } else if (page === "workflow") {
    poll(`/dashboard/api/workflows/${document.body.dataset.workflowId}`, renderWorkflow);
  } else if (page === "job") {
    const jobId = document.body.dataset.jobId;
    const url = `/dashboard/api/jobs/${jobId}`;
    poll(url, renderJob);
    setUpJobActions(jobId, async () => {
      const answer = await fetchJson(url);
      if (answer && answer.ok) renderJob(answer.body);
    });
  }
});
