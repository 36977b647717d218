// Argyll console: the theme switch, and live pages. A page whose <main> carries data-live
// subscribes on the engine's WebSocket (data-live-subscribe is the subscribe message's data)
// and, after any of the events in data-live-events, fetches itself again with ?fragment=1 and
// swaps the new content in. Refreshes are coalesced (at most one in flight, one queued);
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
  let running = false;
  let queued = false;
  let connectedBefore = false;
  let delay = 500;

  async function refresh() {
    if (running) { queued = true; return; }
    running = true;
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
  const id = decodeURIComponent(location.hash.slice(1));
  const target = id ? document.getElementById(id) : null;
  if (target instanceof HTMLDetailsElement) {
    target.open = true;
    target.scrollIntoView({ block: "nearest" });
  }
}

setUpTheme();
addEventListener("hashchange", openTarget);
openTarget();
const live = document.querySelector("main[data-live]");
if (live) setUpLive(live);
