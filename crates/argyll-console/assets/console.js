// Argyll console: the theme switch, and live pages. A page whose <main> carries data-live
// subscribes on the engine's WebSocket (data-live-subscribe is the subscribe message's data)
// and, after any of the events in data-live-events, fetches itself again with ?fragment=1 and
// swaps the new content in. Refreshes are coalesced (at most one in flight, one queued) and
// spaced by data-live-interval milliseconds;
// after a reconnect the page is refreshed once, since events may have been missed meanwhile.

const THEME_KEY = "argyll-theme";
const root = document.documentElement;

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  const dark = currentTheme() === "dark";
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.setAttribute("aria-pressed", String(dark));
  }
}

function currentTheme() {
  if (root.dataset.theme) return root.dataset.theme;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function setUpTheme() {
  let saved = null;
  try { saved = localStorage.getItem(THEME_KEY); } catch { /* storage may be off */ }
  applyTheme(saved);
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.addEventListener("click", () => {
      const next = currentTheme() === "dark" ? "light" : "dark";
      try { localStorage.setItem(THEME_KEY, next); } catch { /* not kept */ }
      applyTheme(next);
    });
  }
}

function setUpLive(region) {
  const events = new Set((region.dataset.liveEvents || "").split(",").filter(Boolean));
  let subscription;
  try { subscription = JSON.parse(region.dataset.liveSubscribe || "{}"); } catch { return; }
  const interval = Number(region.dataset.liveInterval || 0);
  let running = false;
  let queued = false;
  let waiting = false;
  let last = 0;
  let connectedBefore = false;
  let delay = 500;

  // Someone typing in a field of the region (a filter) would lose it to a swap: wait.
  const typing = () => {
    const active = document.activeElement;
    return active && region.contains(active) && active.matches("input, textarea, select");
  };

  async function refresh() {
    if (running) { queued = true; return; }
    if (typing()) {
      if (!waiting) { waiting = true; setTimeout(() => { waiting = false; refresh(); }, 1000); }
      return;
    }
    running = true;
    const wait = last + interval - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    last = Date.now();
    try {
      const url = new URL(location.href);
      url.searchParams.set("fragment", "1");
      const response = await fetch(url, { headers: { accept: "text/html" }, cache: "no-store" });
      if (response.ok || response.status === 404) {
        const html = await response.text();
        const open = [...region.querySelectorAll("details[open][id]")].map((d) => d.id);
        region.innerHTML = html;
        for (const id of open) {
          const details = document.getElementById(id);
          if (details) details.open = true;
        }
        region.dataset.liveRefreshes = String(Number(region.dataset.liveRefreshes || 0) + 1);
      }
    } catch {
      // The server may be restarting: the reconnect refreshes again.
    } finally {
      running = false;
      if (queued) { queued = false; refresh(); }
    }
  }

  let socket = null;
  let retry = null;

  function connect() {
    retry = null;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const current = new WebSocket(`${scheme}://${location.host}/engine/ws`);
    socket = current;
    current.addEventListener("open", () => {
      delay = 500;
      current.send(JSON.stringify({ type: "subscribe", data: subscription }));
      region.dataset.liveState = "open";
      if (connectedBefore) refresh();
      connectedBefore = true;
    });
    current.addEventListener("message", (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      if (event.type === "subscribed") return;
      if (events.size === 0 || events.has(event.type)) refresh();
    });
    current.addEventListener("close", () => {
      if (socket !== current) return; // closed on purpose (the page was left)
      region.dataset.liveState = "closed";
      retry = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  }

  // A page kept in the back-forward cache must not hold a socket: close it when the page is
  // left and connect again (and refresh, events were missed) when it is shown again.
  addEventListener("pagehide", () => {
    const current = socket;
    socket = null;
    if (retry !== null) { clearTimeout(retry); retry = null; }
    if (current) current.close(1000, "page left");
  });
  addEventListener("pageshow", (event) => {
    if (event.persisted && socket === null) connect();
  });

  connect();
}

// A link to a step's details (#exec-<step>) opens them.
function openTarget() {
  let id = "";
  try { id = decodeURIComponent(location.hash.slice(1)); } catch { return; }
  const target = id ? document.getElementById(id) : null;
  if (target instanceof HTMLDetailsElement) {
    target.open = true;
    target.scrollIntoView({ block: "nearest" });
  }
}

// ---------------------------------------------------------------- forms

function showErrors(list, messages) {
  list.replaceChildren(...messages.map((message) => {
    const item = document.createElement(list.tagName === "UL" ? "li" : "span");
    item.textContent = message;
    return item;
  }));
}

function parseObject(text, what) {
  let value;
  try { value = JSON.parse(text); } catch (error) { return [null, `Not valid JSON: ${error.message}`]; }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return [null, `${what} must be a JSON object`];
  }
  return [value, null];
}

function typeProblem(value, type) {
  const is = {
    string: typeof value === "string",
    number: typeof value === "number",
    boolean: typeof value === "boolean",
    object: typeof value === "object" && value !== null && !Array.isArray(value),
    array: Array.isArray(value),
  };
  return type in is && !is[type] ? `must be ${type === "array" || type === "object" ? "an" : "a"} ${type}` : null;
}

// The start form: goals → plan preview (rendered by the server) → init values checked as they
// are typed → POST /engine/flow → the flow view.
function setUpStartForm(form) {
  const preview = document.getElementById("plan-preview");
  const init = document.getElementById("init");
  const initErrors = document.getElementById("init-errors");
  const startError = document.getElementById("start-error");
  const flowId = document.getElementById("flow-id");
  if (!flowId.value) {
    flowId.value = `flow-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  }
  let required = {};
  let edited = false;

  function check() {
    const [value, error] = parseObject(init.value, "The init values");
    const messages = error ? [error] : [];
    if (value) {
      for (const [name, type] of Object.entries(required)) {
        if (!(name in value)) messages.push(`${name}: required by the plan`);
        else {
          const problem = typeProblem(value[name], type);
          if (problem) messages.push(`${name}: ${problem}`);
        }
      }
    }
    showErrors(initErrors, messages);
    init.setAttribute("aria-invalid", String(messages.length > 0));
    return messages.length === 0 ? value : null;
  }

  let previews = 0;
  async function loadPreview() {
    const mine = ++previews;
    const url = new URL("/ui/start/preview", location.href);
    for (const input of form.querySelectorAll("input[name=goal]:checked")) {
      url.searchParams.append("goal", input.value);
    }
    let html;
    try {
      const response = await fetch(url, { cache: "no-store" });
      html = response.ok ? await response.text() : null;
    } catch {
      html = null;
    }
    if (mine !== previews) return; // a newer choice of goals is on its way
    if (html === null) {
      showErrors(startError, ["Could not load the plan: the server did not answer."]);
      return;
    }
    showErrors(startError, []);
    preview.innerHTML = html;
    const plan = preview.querySelector("#plan");
    try { required = plan ? JSON.parse(plan.dataset.required || "{}") : {}; } catch { required = {}; }
    if (plan && !edited) init.value = plan.dataset.template || "{}";
    preview.dataset.goals = url.searchParams.getAll("goal").join(",");
    check();
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "goal") loadPreview();
  });
  init.addEventListener("input", () => { edited = true; check(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showErrors(startError, []);
    const goals = [...form.querySelectorAll("input[name=goal]:checked")].map((i) => i.value);
    if (goals.length === 0) { showErrors(startError, ["Pick at least one goal."]); return; }
    const value = check();
    if (!value) return;
    const id = flowId.value.trim();
    let response;
    try {
      response = await fetch("/engine/flow", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id, goals, init: value }),
      });
    } catch {
      showErrors(startError, ["The server did not answer: nothing was started."]);
      return;
    }
    if (response.ok) {
      // The server may have cleaned the id up (sanitize_flow_id): go to the one it started.
      let started = id;
      try { started = (await response.json()).flow_id || id; } catch { /* keep the typed id */ }
      location.href = `/ui/flow/${encodeURIComponent(started)}`;
      return;
    }
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    // Messages about the init values go next to the editor, others next to the button.
    if (/required inputs|attribute|init/i.test(message)) showErrors(initErrors, [message]);
    else showErrors(startError, [message]);
  });
}

// The step editor: templates, JSON checked as it is typed, the server's 400 message shown.
function setUpStepEditor(form) {
  const text = document.getElementById("step-json");
  const errors = document.getElementById("step-errors");
  const template = document.getElementById("step-template");
  const check = () => {
    const [value, error] = parseObject(text.value, "A step");
    showErrors(errors, error ? [error] : []);
    text.setAttribute("aria-invalid", String(Boolean(error)));
    return value;
  };
  if (template) template.addEventListener("change", () => { text.value = template.value; check(); });
  text.addEventListener("input", check);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const step = check();
    if (!step) return;
    const editing = form.dataset.editing;
    let response;
    try {
      response = await fetch(editing ? `/engine/step/${encodeURIComponent(editing)}` : "/engine/step", {
        method: editing ? "PUT" : "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(step),
      });
    } catch {
      showErrors(errors, ["The server did not answer: the step was not saved."]);
      return;
    }
    if (response.ok) {
      location.href = `/ui/steps#step-${encodeURIComponent(step.id ?? editing)}`;
      return;
    }
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    showErrors(errors, [`The server refused the step: ${message}`]);
    text.setAttribute("aria-invalid", "true");
  });
}

setUpTheme();
const startForm = document.querySelector("form[data-start]");
if (startForm) setUpStartForm(startForm);
const stepEditor = document.querySelector("form[data-step-editor]");
if (stepEditor) setUpStepEditor(stepEditor);
addEventListener("hashchange", openTarget);
openTarget();
const live = document.querySelector("main[data-live]");
if (live) setUpLive(live);
