"use strict";
const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("jobwire-key") || "";
let current = null;  // the endpoint shown in detail

const TERMINAL = ["task.completed", "task.failed", "task.canceled"];

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "muted";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    // Without a key, the HttpOnly session cookie of a portal link signs the request in.
    headers: Object.assign({"Content-Type": "application/json", "Accept": "application/json"},
                           apiKey ? {"Authorization": "Bearer " + apiKey} : {}),
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && (data.detail || data.title)) || ("HTTP " + response.status));
  return data;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function button(label, onClick, className) {
  const b = document.createElement("button");
  b.textContent = label;
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

async function loadEndpoints() {
  const page = await api("GET", "/v1/webhooks/endpoints");
  const body = $("endpoints");
  body.replaceChildren();
  for (const endpoint of page.data) {
    const row = document.createElement("tr");
    row.dataset.endpoint = endpoint.id;
    cell(row, endpoint.url);
    cell(row, (endpoint.event_types ? endpoint.event_types.join(", ") : "all") +
         (endpoint.filter ? " where " + JSON.stringify(endpoint.filter) : "") +
         (endpoint.ordering === "job" ? ", one at a time per job" : ""));
    cell(row, endpoint.disabled ? "disabled" + (endpoint.disabled_reason ? ": " + endpoint.disabled_reason : "") : "enabled",
         endpoint.disabled ? "status-failed" : "status-succeeded");
    cell(row, "").append(button("Open", () => show(endpoint), "secondary"));
    body.append(row);
  }
  if (current) {
    const fresh = page.data.find((e) => e.id === current.id);
    if (fresh) show(fresh); else { current = null; $("detail").classList.add("hidden"); }
  }
}

function show(endpoint) {
  current = endpoint;
  $("detail").classList.remove("hidden");
  $("detail-id").textContent = endpoint.id;
  $("edit-url").value = endpoint.url;
  $("edit-description").value = endpoint.description || "";
  $("edit-rate").value = endpoint.rate_limit_per_s || "";
  $("edit-filter").value = endpoint.filter ? JSON.stringify(endpoint.filter) : "";
  $("edit-ordering").value = endpoint.ordering || "none";
  // Names and kinds only: the values are sealed and never come back from the API.
  $("detail-options").textContent = "signing: " + (endpoint.signing || "hmac") +
    "; custom headers: " + (endpoint.headers ? endpoint.headers.join(", ") : "none") +
    "; auth: " + (endpoint.auth ? endpoint.auth.type : "none") +
    (endpoint.tls_client_cert ? "; client certificate: " + endpoint.tls_client_cert.subject +
      " until " + endpoint.tls_client_cert.not_after : "") +
    (endpoint.tls_ca ? "; own CA bundle" : "");
  $("toggle").textContent = endpoint.disabled ? "Enable" : "Disable";
  $("delivery-detail").classList.add("hidden");
  loadDeliveries().then(loadHealth).catch((error) => say(error.message, true));
}

async function loadDeliveries() {
  if (!current) return;
  const page = await api("GET", "/v1/webhooks/endpoints/" + current.id + "/deliveries");
  const body = $("deliveries");
  body.replaceChildren();
  for (const delivery of page.data) {
    const row = document.createElement("tr");
    row.dataset.delivery = delivery.id;
    cell(row, "").append(button(delivery.id, () => showDelivery(delivery), "secondary"));
    cell(row, delivery.event_type + (delivery.job_id ? " · " + delivery.job_id : ""));
    cell(row, delivery.status, "status-" + delivery.status);
    cell(row, delivery.attempts.map((a) => "#" + a.attempt + " " + (a.status_code ?? "-") + " " +
      (a.latency_ms != null ? a.latency_ms + " ms" : "") + (a.error ? " " + a.error : "")).join("\n"));
    const actions = cell(row, "");
    if (delivery.status === "failed" || delivery.status === "skipped") {
      actions.append(button("Retry", () => act(() => api("POST", "/v1/webhooks/deliveries/" + delivery.id + "/retry"), "Retry queued"), "secondary"));
    }
    body.append(row);
  }
}

function showDelivery(delivery) {
  $("delivery-detail").classList.remove("hidden");
  $("delivery-id").textContent = delivery.id;
  $("delivery-headers").textContent = [
    "content-type: application/json",
    "webhook-id: " + delivery.id,
    "webhook-timestamp: <unix seconds of each attempt>",
    "webhook-signature: v1,<HMAC-SHA256 of id.timestamp.body with the endpoint's secret>",
    "event: " + delivery.event_type + (delivery.job_id ? " for job " + delivery.job_id : ""),
  ].join("\n");
  const first = delivery.attempts.find((attempt) => attempt.request);
  $("delivery-payload").textContent = first ? JSON.stringify(first.request.body, null, 2)
    : "(not shown: a portal link shows outcomes, not the job data sent; or the delivery ended before any attempt)";
  $("delivery-attempts").textContent = JSON.stringify(
    delivery.attempts.map(({request, ...attempt}) => attempt), null, 2);
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadHealth() {
  if (!current) return;
  const health = await api("GET", "/v1/webhooks/endpoints/" + current.id + "/health");
  const chart = $("health");
  chart.replaceChildren();
  const top = Math.max(1, ...health.hours.map((h) => h.succeeded + h.retrying + h.failed));
  const width = 720 / health.hours.length, plot = 100;
  health.hours.forEach((hour, index) => {
    let y = plot + 5;
    for (const kind of ["succeeded", "retrying", "failed"]) {
      if (!hour[kind]) continue;
      const height = Math.max(1, hour[kind] / top * plot);
      y -= height;
      const bar = svg("rect", {x: index * width + 2, y, width: width - 4, height, class: "bar " + kind,
                               "data-hour": hour.hour, "data-kind": kind, "data-count": hour[kind]});
      bar.append(svg("title", {}, hour.hour.slice(11, 16) + " UTC: " + hour[kind] + " " + kind));
      chart.append(bar);
    }
    if (index % 3 === 0) chart.append(svg("text", {x: index * width + 2, y: 125}, hour.hour.slice(11, 13) + "h"));
  });
}

function showSecret(endpoint) {
  $("secret-box").classList.remove("hidden");
  $("secret-endpoint").textContent = endpoint.id;
  $("secret").textContent = endpoint.secret;
}

async function act(work, done) {
  try {
    await work();
    say(done);
    await loadEndpoints();
  } catch (error) {
    say(error.message, true);
  }
}

$("connect").addEventListener("click", async () => {
  apiKey = $("api-key").value.trim();
  try {
    await loadEndpoints();
    sessionStorage.setItem("jobwire-key", apiKey);
    $("app").classList.remove("hidden");
    say("Connected.");
  } catch (error) {
    say(error.message, true);
  }
});

$("create").addEventListener("click", () => act(async () => {
  const types = [...document.querySelectorAll(".new-type:checked")].map((box) => box.value);
  const endpoint = await api("POST", "/v1/webhooks/endpoints", {
    url: $("new-url").value.trim(), description: $("new-description").value || null,
    // The three terminal types alone are the default (null); anything else is listed.
    event_types: types.length === 3 && types.every((t) => TERMINAL.includes(t)) ? null : types,
  });
  showSecret(endpoint);
  current = endpoint;
}, "Endpoint created."));

$("save").addEventListener("click", () => act(() => api("PATCH", "/v1/webhooks/endpoints/" + current.id, {
  url: $("edit-url").value.trim(), description: $("edit-description").value || null,
  rate_limit_per_s: $("edit-rate").value ? Number($("edit-rate").value) : null,
  filter: parseFilter($("edit-filter").value),
  ordering: $("edit-ordering").value,
}), "Saved."));

// A content filter as typed: JSON, or nothing for every job.
function parseFilter(text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error("the filter is not JSON: " + error.message);
  }
}
$("toggle").addEventListener("click", () => act(() => api("PATCH", "/v1/webhooks/endpoints/" + current.id,
  {disabled: !current.disabled}), current && current.disabled ? "Enabled." : "Disabled."));
$("rotate").addEventListener("click", () => act(async () => showSecret(
  await api("POST", "/v1/webhooks/endpoints/" + current.id + "/rotate-secret", {})), "Secret rotated; the old one signs for 24 h."));
$("send-test").addEventListener("click", () => act(() => api("POST", "/v1/webhooks/endpoints/" + current.id + "/test"),
  "Test event queued."));
$("delete").addEventListener("click", () => act(async () => {
  await api("DELETE", "/v1/webhooks/endpoints/" + current.id);
  current = null;
  $("detail").classList.add("hidden");
}, "Deleted."));
$("recover").addEventListener("click", () => act(async () => {
  const since = $("recover-since").value ? new Date($("recover-since").value).toISOString() : "1970-01-01T00:00:00Z";
  const result = await api("POST", "/v1/webhooks/endpoints/" + current.id + "/recover", {since});
  say(result.deliveries.length + " deliveries queued again" + (result.more ? "; more remain: recover again shortly." : "."));
}, "Recovery queued."));
$("refresh").addEventListener("click", () => act(async () => { await loadDeliveries(); await loadHealth(); }, "Refreshed."));

// --- views -------------------------------------------------------------------------------

for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) {
      other.className = other === tab ? "current" : "secondary";
      $(other.dataset.view).classList.toggle("hidden", other !== tab);
    }
    if (tab.id === "tab-jobs") act(loadJobs, "Jobs loaded.");
    if (tab.id === "tab-catalog") act(loadCatalog, "Catalog loaded.");
  });
}

// --- jobs --------------------------------------------------------------------------------

let following = null;  // the AbortController of the open job's live stream

async function loadJobs() {
  if (!apiKey) {
    $("jobs-note").textContent = "Jobs need an API key: a portal link manages webhooks only.";
    $("jobs").replaceChildren();
    return;
  }
  $("jobs-note").textContent = "";
  const query = new URLSearchParams({limit: "50"});
  if ($("jobs-status").value) query.set("status", $("jobs-status").value);
  if ($("jobs-operation").value.trim()) query.set("operation", $("jobs-operation").value.trim());
  const page = await api("GET", "/v1/jobs?" + query);
  const body = $("jobs");
  body.replaceChildren();
  for (const job of page.data) {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    cell(row, "").append(button(job.id, () => openJob(job.id), "secondary"));
    cell(row, job.operation);
    cell(row, job.status, "status-" + job.status).dataset.field = "status";
    cell(row, job.updated_at).dataset.field = "updated";
    body.append(row);
  }
}

function showJob(task) {
  $("job-status").textContent = task.status;
  $("job-status").className = "status-" + task.status;
  $("job-cancel").disabled = ["completed", "failed", "canceled"].includes(task.status);
  const row = document.querySelector('#jobs tr[data-job="' + task.id + '"]');
  if (row) {
    const status = row.querySelector('[data-field="status"]');
    status.textContent = task.status;
    status.className = "status-" + task.status;
    row.querySelector('[data-field="updated"]').textContent = task.updated_at;
  }
}

function addTimeline(frame) {
  const row = document.createElement("tr");
  cell(row, frame.position);
  cell(row, frame.event.type + (frame.event.data && frame.event.data.error ? " (" + frame.event.data.error.code + ")" : ""));
  cell(row, frame.verdict + (frame.reason ? ": " + frame.reason : ""), "verdict-" + frame.verdict);
  cell(row, frame.event.time);
  $("timeline").append(row);
}

// The job's webhooks, each with the trace it belongs to (when the dispatcher traces): the id
// to look the job up by in the tracing backend.
async function loadJobDeliveries(jobId) {
  const page = await api("GET", "/v1/jobs/" + jobId + "/deliveries");
  const rows = page.data.map((delivery) => {
    const row = document.createElement("tr");
    row.dataset.delivery = delivery.id;
    cell(row, delivery.event_type);
    cell(row, delivery.endpoint_id);
    cell(row, delivery.status, "status-" + delivery.status);
    cell(row, String(delivery.attempts.length));
    const traced = delivery.attempts.map((a) => a.extra && a.extra.trace_id).find(Boolean);
    cell(row, traced || "not traced").dataset.field = "trace";
    return row;
  });
  $("job-deliveries").replaceChildren(...rows);
}

async function openJob(jobId) {
  if (following) following.abort();
  following = new AbortController();
  $("job-detail").classList.remove("hidden");
  $("job-id").textContent = jobId;
  $("timeline").replaceChildren();
  $("job-deliveries").replaceChildren();
  showJob(await api("GET", "/v1/jobs/" + jobId));
  // Beside the live stream, not before it: a failing delivery log must not stop the timeline.
  loadJobDeliveries(jobId).catch((error) => say(error.message, true));
  // Server-sent events through fetch: EventSource cannot send the Authorization header.
  const response = await fetch("/v1/jobs/" + jobId + "/events", {
    headers: {"Accept": "text/event-stream", "Authorization": "Bearer " + apiKey}, signal: following.signal,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
        if (!data) continue;  // a keep-alive comment
        addTimeline(JSON.parse(data));
        showJob(await api("GET", "/v1/jobs/" + jobId));
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") say(error.message, true);
  }
}

$("jobs-refresh").addEventListener("click", () => act(loadJobs, "Jobs loaded."));
$("job-deliveries-refresh").addEventListener("click", () => act(
  () => loadJobDeliveries($("job-id").textContent), "Webhooks loaded."));
$("job-cancel").addEventListener("click", () => act(async () => {
  showJob(await api("POST", "/v1/jobs/" + $("job-id").textContent + "/cancel", {reason: "canceled in the portal"}));
}, "Cancel requested."));

// --- event catalog -----------------------------------------------------------------------

async function loadCatalog() {
  const spec = await (await fetch("/asyncapi.json")).json();
  const box = $("catalog");
  box.replaceChildren();
  for (const [channelName, channel] of Object.entries(spec.channels)) {
    if (!["jobsEvents", "webhookEndpoint"].includes(channelName)) continue;
    const heading = document.createElement("h2");
    heading.textContent = channel.title + (channel.address ? " (" + channel.address + ")" : "");
    box.append(heading);
    for (const reference of Object.values(channel.messages)) {
      const message = spec.components.messages[reference.$ref.split("/").pop()];
      const article = document.createElement("details");
      article.className = "event-type";
      article.dataset.type = message.name;
      const summary = document.createElement("summary");
      summary.textContent = message.name + (message.summary ? " · " + message.summary : "");
      const schema = document.createElement("pre");
      schema.textContent = JSON.stringify(message.payload, null, 2);
      article.append(summary, schema);
      for (const example of message.examples || []) {
        const pre = document.createElement("pre");
        pre.className = "example";
        pre.textContent = JSON.stringify(example.payload, null, 2);
        article.append(pre);
      }
      box.append(article);
    }
  }
}

if (apiKey) {
  $("api-key").value = apiKey;
  $("connect").click();
} else {
  // Opened through a one-time portal link? Its session cookie is enough.
  loadEndpoints().then(() => {
    $("app").classList.remove("hidden");
    say("Signed in through a portal link (webhook management only).");
  }, () => {});
}
