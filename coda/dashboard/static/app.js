// Coda's dashboard: three pages that poll the JSON API under /api/.
// Plain DOM code, no build step; text from runs (names, errors, tracebacks)
// is only ever set as text, never as HTML.
"use strict";

// -- helpers -------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function clock(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
}

function took(job, now) {
  if (!job.started_at) return "";
  const end = job.finished_at || now;
  return duration(Math.max(0, end - job.started_at)) + (job.finished_at ? "" : " so far");
}

function runLink(id, text) {
  return h("a", { href: `/runs/${encodeURIComponent(id)}`, class: "run-link" }, text || id);
}

function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

function finished(state) {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(response.status, "bad_response", `${response.status} ${response.statusText}`);
  }
  if (!response.ok) {
    const error = body.error || {};
    throw new ApiError(response.status, error.code, error.message || response.statusText);
  }
  return body;
}

function setLive(ok, text) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.classList.toggle("stale", !ok);
}

// Poll ``refresh`` every ``interval`` ms; it returns false to stop.
function poll(refresh, interval) {
  let timer = null;
  async function tick() {
    let again = true;
    try {
      again = (await refresh()) !== false;
      setLive(true, again ? `live · ${new Date().toLocaleTimeString()}` : "finished");
    } catch (error) {
      again = !(error instanceof ApiError) || error.status >= 500;
      setLive(false, again ? "disconnected: retrying" : "stopped");
      showError(error.message);
    }
    if (again) timer = setTimeout(tick, interval);
  }
  tick();
  return () => clearTimeout(timer);
}

function fillRows(table, rows, emptyText) {
  const body = table.querySelector("tbody");
  const columns = table.querySelectorAll("thead th").length;
  body.replaceChildren(
    ...(rows.length ? rows : [h("tr", { class: "empty" }, h("td", { colspan: columns }, emptyText))])
  );
}

// -- overview ------------------------------------------------------------

function overviewPage() {
  poll(async () => {
    const data = await api("/api/overview");
    showError("");
    const sup = data.supervisor || {};
    document.getElementById("supervisor").textContent =
      `supervisor ${sup.id} (pid ${sup.pid}) on ${(sup.addresses || []).join(", ")}, ` +
      `up ${duration(sup.uptime)}, ${sup.worker_restarts || 0} worker restarts; state: ${sup.state}`;
    fillRows(document.getElementById("workers"), data.workers.map(workerRow), "no workers connected");
    fillRows(
      document.getElementById("queues"),
      data.queues.map((q) => h("tr", {}, h("td", {}, q.name), h("td", {}, q.tasks), h("td", {}, q.workflows), h("td", {}, q.rate.toFixed(2)))),
      "no queues"
    );
    document.getElementById("inflight").textContent =
      `in flight: ${data.runs_in_flight} runs, ${data.jobs_in_flight} jobs (${data.delayed} delayed); rates over the last ${data.rate_window}s`;
    fillRows(
      document.getElementById("failures"),
      data.recent_failures.map((run) =>
        h("tr", {}, h("td", {}, runLink(run.id)), h("td", {}, run.name),
          h("td", { class: "mono" }, run.failure ? `${run.failure.type_name}: ${run.failure.message}` : ""),
          h("td", {}, clock(run.finished_at)))
      ),
      "no failed runs"
    );
    fillRows(
      document.getElementById("names"),
      Object.entries(data.names).map(([name, c]) =>
        h("tr", {}, h("td", {}, name), h("td", {}, c.succeeded || 0), h("td", {}, c.failed || 0),
          h("td", {}, c.cancelled || 0), h("td", {}, c.retried || 0), h("td", {}, c.cache_hits || 0),
          h("td", {}, (c.rate || 0).toFixed(2)))
      ),
      "nothing has finished yet"
    );
    fillRows(
      document.getElementById("schedules"),
      data.schedules.map((s) =>
        h("tr", {}, h("td", {}, s.name), h("td", {}, s.target), h("td", {}, s.schedule),
          h("td", {}, clock(s.next)), h("td", {}, s.last_run_id ? runLink(s.last_run_id, clock(s.last)) : "never"))
      ),
      "no schedules"
    );
  }, 2000);
}

function workerRow(w) {
  const running = w.running.map((job) =>
    h("li", {}, runLink(job.run, job.name), " ", h("span", { class: "muted" }, job.kind === "task" && job.run !== job.id ? `step (${job.state})` : job.state))
  );
  return h("tr", {}, h("td", {}, `#${w.id}`), h("td", {}, w.pid), h("td", {}, w.queues.join(", ")),
    h("td", {}, w.tasks), h("td", {}, w.workflows),
    h("td", {}, running.length ? h("ul", { class: "running" }, running) : h("span", { class: "muted" }, "idle")));
}

// -- runs ----------------------------------------------------------------

function runsPage() {
  const params = new URLSearchParams(location.search);
  const form = document.getElementById("filters");
  for (const [key, value] of params) {
    if (form.elements[key]) form.elements[key].value = value;
  }
  const query = new URLSearchParams([...params].filter(([, v]) => v !== ""));
  poll(async () => {
    const data = await api(`/api/runs?${query}`);
    showError("");
    const rows = data.runs.map((run) =>
      h("tr", { dataset: { runId: run.id } }, h("td", { class: "mono" }, runLink(run.id)), h("td", {}, run.name),
        h("td", {}, run.kind), h("td", {}, stateBadge(run.state)), h("td", {}, run.attempt),
        h("td", {}, clock(run.created_at)), h("td", {}, took(run, data.now)))
    );
    document.getElementById("runs").querySelector("tbody").replaceChildren(...rows);
    document.getElementById("empty").hidden = rows.length > 0;
  }, 2000);
}

// -- one run -------------------------------------------------------------

function runPage() {
  const runId = decodeURIComponent(location.pathname.split("/").pop());
  document.title = `Coda: run ${runId}`;
  const button = document.getElementById("cancel");
  let finishedPolls = 0;
  let stopPolling = () => {};
  async function refresh() {
    const data = await api(`/api/runs/${encodeURIComponent(runId)}`);
    drawRun(data);
    button.disabled = finished(data.run.state);
    finishedPolls = finished(data.run.state) ? finishedPolls + 1 : 0;
    return finishedPolls < 2; // once more after the end: late steps settle
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    const result = document.getElementById("cancel-result");
    try {
      const answer = await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      });
      result.textContent = `cancel requested: the run is ${answer.state}`;
      showError("");
    } catch (error) {
      showError(error.message);
    }
    stopPolling();
    finishedPolls = 0;
    stopPolling = poll(refresh, 1000);
  });
  stopPolling = poll(refresh, 1000);
}

function drawRun(data) {
  const { run, steps, now } = data;
  document.getElementById("summary").hidden = false;
  document.getElementById("timeline-section").hidden = false;
  document.getElementById("run-name").textContent = run.name;
  const state = document.getElementById("run-state");
  state.textContent = run.state;
  state.className = `state state-${run.state}`;
  const facts = [
    ["run", h("span", { class: "mono" }, run.id)],
    ["kind", run.kind],
    ["queue", run.queue],
    ["attempts", run.attempt],
    ["created", clock(run.created_at)],
    ["duration", took(run, now) || "not started"],
  ];
  if (run.parent_run) facts.push(["spawned by", runLink(run.parent_run)]);
  if (run.losses) facts.push(["lost workers", run.losses]);
  document.getElementById("run-facts").replaceChildren(
    ...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])
  );
  document.getElementById("step-count").textContent = `(${steps.length})`;
  drawTimeline(run, steps, now);
  const failure = document.getElementById("run-failure");
  failure.replaceChildren(...(run.failure ? [failureBlock("the run", run, "run-traceback")] : []));
}

function drawTimeline(run, steps, now) {
  const origin = run.created_at;
  const ends = [run.finished_at || now, ...steps.map((s) => s.finished_at || (finished(s.state) ? s.created_at : now))];
  const span = Math.max(0.001, Math.max(...ends) - origin);
  const at = (t) => `${(100 * Math.max(0, t - origin)) / span}%`;
  const rows = [timelineRow(run, null, origin, span, now, at)];
  steps.forEach((step, index) => rows.push(timelineRow(step, index + 1, origin, span, now, at)));
  const axis = h("div", { class: "axis" }, h("span", {}, "0"), h("span", {}, `+${duration(span)}`));
  const timeline = document.getElementById("timeline");
  // Keep open tracebacks open across refreshes.
  const open = new Set([...timeline.querySelectorAll("details[open]")].map((d) => d.dataset.stepId));
  timeline.replaceChildren(...rows, axis);
  for (const details of timeline.querySelectorAll("details")) {
    if (open.has(details.dataset.stepId)) details.open = true;
  }
}

function timelineRow(job, index, origin, span, now, at) {
  const isRun = index === null;
  const classes = ["step", `state-${job.state}`];
  if (job.cached) classes.push("cached");
  if (job.attempt > 1) classes.push("retried");
  if (isRun) classes.push("run-row");
  const start = job.started_at;
  const end = job.finished_at || (finished(job.state) ? start : now);
  const bars = [];
  const waitEnd = start || (finished(job.state) ? job.finished_at || job.created_at : now);
  if (waitEnd > job.created_at) {
    bars.push(h("div", { class: "bar queued", style: { left: at(job.created_at), width: `${(100 * (waitEnd - job.created_at)) / span}%` }, title: "waiting" }));
  }
  if (start) {
    const width = Math.max(0.4, (100 * Math.max(0, end - start)) / span);
    bars.push(h("div", { class: "bar work", style: { left: at(start), width: `${width}%` }, title: `${job.state}, ${duration(Math.max(0, end - start))}` }));
  }
  const badges = [stateBadge(job.state)];
  if (job.cached) badges.push(h("span", { class: "badge cached-badge" }, "cached"));
  if (job.attempt > 1) badges.push(h("span", { class: "badge retry-badge" }, `attempt ${job.attempt}`));
  let name = job.name;
  if (!isRun && job.kind === "workflow") name = runLink(job.id, job.name);
  const label = h("div", { class: "label" },
    h("span", { class: "index" }, isRun ? "run" : `${index}.`), " ",
    h("span", { class: "name" }, name),
    job.cache_key_text ? h("span", { class: "key mono", title: "cache key" }, ` ${job.cache_key_text}`) : null,
    h("div", { class: "badges" }, badges, job.origin ? h("span", { class: "origin muted" }, job.origin) : null, h("span", { class: "muted" }, took(job, now))));
  const row = h("div", { class: classes.join(" "), dataset: { stepId: job.id, name: job.name } },
    label, h("div", { class: "track" }, bars));
  if (!isRun && job.failure) {
    return h("div", { class: "step-block" }, row, failureBlock(`step ${index}`, job, "traceback", job.id));
  }
  return row;
}

function failureBlock(what, job, cls, stepId) {
  const failure = job.failure;
  const how = job.state === "cancelled" ? "was cancelled" : "failed";
  return h("details", { class: `failure ${cls}`, dataset: { stepId: stepId || "run" } },
    h("summary", {}, `${what} ${how}: ${failure.type_name}: ${failure.message}`),
    h("pre", {}, failure.traceback || "(no traceback)"));
}

// -- start ----------------------------------------------------------------

({ overview: overviewPage, runs: runsPage, run: runPage })[document.body.dataset.page]();
