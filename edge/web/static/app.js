/* The bedside page: live over Server-Sent Events from the display server. */
"use strict";
const LATEST = 3;
const S = {history: 50, alerts: new Map(), carts: new Map(), offset: 0, stale: 150, displayId: "", sound: false,
           audio: null, lastBeep: 0, connected: false, serverUp: false};
window.pneumo = {renders: {}, state: S};

function serverNow() { return Date.now() - S.offset; }

/* --- sound: WebAudio, only after the user enabled it (browsers require a gesture) --- */
function beep() {
  if (!S.sound || !S.audio) return;
  const ctx = S.audio, t = ctx.currentTime;
  for (const [start, freq] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = freq; osc.type = "square";
    gain.gain.setValueAtTime(0.0001, t + start);
    gain.gain.exponentialRampToValueAtTime(0.25, t + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + start); osc.stop(t + start + 0.22);
  }
  S.lastBeep = Date.now();
  window.pneumo.beeps = (window.pneumo.beeps || 0) + 1;
}
function setSound(on) {
  S.sound = on;
  if (on && !S.audio) S.audio = new (window.AudioContext || window.webkitAudioContext)();
  if (on && S.audio.state === "suspended") S.audio.resume();
  const button = document.getElementById("sound");
  button.textContent = on ? "Sound on" : "Enable sound";
  button.classList.toggle("on", on);
}
document.getElementById("sound").addEventListener("click", () => { setSound(!S.sound); if (S.sound) beep(); });
/* A kiosk started with --autoplay-policy=no-user-gesture-required may sound without a click. */
(() => {
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  if (ctx.state === "running") { S.audio = ctx; setSound(true); } else ctx.close();
})();
applyRegionToggle(document.getElementById("show-region"));

/* --- connection --- */
function setConn(ok, detail) {
  const node = document.getElementById("conn");
  node.textContent = ok ? "Live" : detail;
  node.className = "conn " + (ok ? "ok" : "bad");
  document.body.classList.toggle("disconnected", !ok);
}
function showConnection() {
  if (!S.serverUp) setConn(false, "connection lost: display server unreachable, retrying");
  else if (!S.connected) setConn(false, S.connDetail || "connection lost");
  else setConn(true, "");
}

/* --- carts --- */
function cartState(c) {
  const age = (serverNow() - (c.heartbeat_ms || c.heard_ms)) / 1000;
  if (c.state === "offline") return ["offline", c.clean === false ? "OFFLINE (connection lost)" : "OFFLINE (stopped)"];
  if (c.state === "online" && age > S.stale) return ["stale", "STALE: no heartbeat for " + fmtAgo(age).replace(" ago", "")];
  if (c.state === "online") return ["online", "ONLINE"];
  return ["other", String(c.state || "unknown").toUpperCase()];
}
function renderCarts() {
  const box = document.getElementById("carts");
  box.replaceChildren();
  for (const c of [...S.carts.values()].sort((a, b) => a.key.localeCompare(b.key))) {
    const [cls, label] = cartState(c);
    const ev = c.last_event;
    box.append(el("div", {class: "cart " + cls, "data-cart": c.key},
      el("div", {class: "cart-name", text: c.device}), el("div", {class: "muted", text: c.site}),
      el("div", {class: "cart-state", text: label}),
      el("div", {text: "queue " + (c.queue_depth === null || c.queue_depth === undefined ? "-" : c.queue_depth)}),
      el("div", {class: "muted heartbeat", text: c.heartbeat_ms ? "last heartbeat " + fmtAgo((serverNow() - c.heartbeat_ms) / 1000) : "no heartbeat yet"}),
      c.unacknowledged ? el("div", {class: "unacked", text: c.unacknowledged + " unacknowledged"}) : null,
      ev ? el("div", {class: "muted last-event", text: ev.kind + (ev.code ? " (" + ev.code + ")" : "") + (ev.file_name ? ": " + ev.file_name : "")}) : null));
  }
}

/* --- alerts --- */
function sorted() {
  return [...S.alerts.values()].sort((a, b) => b.received_ms - a.received_ms);
}
function ackText(ack) {
  return "Acknowledged by " + (ack.initials ? ack.initials + " at " : "") + ack.display_id + ", " + ack.acked_at.slice(11, 19) + " UTC";
}
async function acknowledge(alertId, button) {
  const initials = document.getElementById("initials").value.trim();
  button.disabled = true;
  try {
    const r = await fetch("/api/v1/ack", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({alert_id: alertId, initials: initials})});
    const body = await r.json();
    if (!r.ok) throw new Error(body.reason || r.statusText);
    const view = S.alerts.get(alertId);
    if (view && !view.ack) view.ack = body.ack;
    if (view) view.ackQueued = !body.delivered;
    render();
    document.getElementById("ack-error").hidden = true;
  } catch (e) {
    button.disabled = false;
    const box = document.getElementById("ack-error");   /* inline: a kiosk has nobody to close a dialog */
    box.textContent = "Acknowledge failed: " + e.message;
    box.hidden = false;
  }
}
function card(view) {
  const a = view.alert, f = a.finding, pos = f.pneumothorax;
  const warn = useWarning(a.intended_use);
  const ago = (serverNow() - Date.parse(a.created_at)) / 1000;
  const node = el("article", {class: "study " + (pos ? "positive" : "negative") + (view.ack ? " acked" : ""), "data-alert-id": a.alert_id},
    el("div", {class: "study-head"},
      el("span", {class: "cart-label", text: a.site + " / " + a.device}),
      el("span", {class: "file", text: a.source.file_name}),
      el("span", {class: "ago", "data-created": a.created_at, text: fmtAgo(ago)})),
    warn ? el("div", {class: "demo", text: warn}) : null,
    buildFilm(a, view.overlay ? "/overlay/" + a.alert_id + ".jpg" : null),
    el("div", {class: "decision", text: pos ? "PNEUMOTHORAX SUSPECTED" : "No pneumothorax detected"}),
    el("dl", {class: "facts"},
      el("dt", {text: "probability"}), el("dd", {class: "probability", text: fmtP(f.probability)}),
      pos ? el("dt", {text: "side"}) : null, pos ? el("dd", {class: "side", text: f.side || "-"}) : null,
      pos ? el("dt", {text: "size"}) : null, pos ? el("dd", {class: "size", text: fmtArea(f)}) : null,
      el("dt", {text: "models"}), el("dd", {class: "models", text: modelsText(a.models)})));
  if (pos) {
    if (view.ack) append(node, el("div", {class: "ack-state", text: ackText(view.ack) + (view.ackQueued ? " (queued: broker unreachable, sent on reconnect)" : "")}));
    else append(node, el("button", {class: "ack", type: "button", onclick: (e) => acknowledge(a.alert_id, e.target), text: "Acknowledge"}),
                     view.escalations ? el("div", {class: "escalated", text: "Re-announced by the cart " + view.escalations + "x: nobody acknowledged"}) : null);
  }
  return node;
}
const cards = new Map();   /* alert_id -> {sig, node}: a card is rebuilt only when it changed */
function cachedCard(view) {
  const sig = JSON.stringify([view.ack, view.ackQueued, view.overlay, view.escalations]);
  const hit = cards.get(view.alert.alert_id);
  if (hit && hit.sig === sig) return hit.node;
  const node = card(view);
  cards.set(view.alert.alert_id, {sig: sig, node: node});
  return node;
}
function renderLatest() {
  const box = document.getElementById("latest");
  const views = sorted().slice(0, LATEST);
  if (!views.length) return;
  const nodes = views.map(cachedCard);
  if (nodes.length !== box.children.length || nodes.some((n, i) => box.children[i] !== n)) box.replaceChildren(...nodes);
  const keep = new Set(views.map(v => v.alert.alert_id));
  for (const id of [...cards.keys()]) if (!keep.has(id)) cards.delete(id);
}
function forget(alertId) {
  S.alerts.delete(alertId);
  delete window.pneumo.renders[alertId];
}
function renderHistory() {
  const body = document.querySelector("#history tbody");
  body.replaceChildren(...sorted().map(v => {
    const a = v.alert, f = a.finding;
    return el("tr", {class: f.pneumothorax ? "positive" : "", "data-alert-id": a.alert_id},
      el("td", {text: a.created_at.slice(11, 19)}), el("td", {text: a.device}),
      el("td", {text: a.source.file_name}),
      el("td", {text: f.pneumothorax ? "POSITIVE " + (f.side || "") : "negative"}),
      el("td", {text: fmtP(f.probability)}),
      el("td", {text: f.pneumothorax ? (v.ack ? "\u2713 " + (v.ack.initials || "") : "\u2717") : ""}));
  }));
}
function renderAlarm() {
  const open = sorted().filter(v => v.alert.finding.pneumothorax && !v.ack);
  const box = document.getElementById("alarm");
  box.hidden = !open.length;
  document.body.classList.toggle("alarming", open.length > 0);
  document.getElementById("alarm-list").replaceChildren(...open.map(v => el("div", {class: "alarm-item"},
    el("strong", {text: "PNEUMOTHORAX SUSPECTED"}),
    el("span", {text: " " + v.alert.device + " \u00b7 " + v.alert.source.file_name + " \u00b7 " + (v.alert.finding.side || "") + " " + fmtArea(v.alert.finding)}),
    el("button", {class: "ack", type: "button", onclick: (e) => acknowledge(v.alert.alert_id, e.target), text: "Acknowledge"}))));
  const warn = [...new Set(sorted().map(v => useWarning(v.alert.intended_use)).filter(Boolean))];
  const banner = document.getElementById("use-banner");
  banner.hidden = !warn.length;
  banner.textContent = warn.join(" / ");
  return open.length;
}
function render() {
  renderLatest(); renderHistory(); renderAlarm(); renderCarts();
}
function stampRender(ids) {
  requestAnimationFrame(() => {
    const t = performance.timeOrigin + performance.now();
    for (const id of ids) if (!(id in window.pneumo.renders)) window.pneumo.renders[id] = t;
  });
}

/* --- events --- */
function handle(ev) {
  switch (ev.type) {
    case "snapshot":
      S.offset = Date.now() - ev.server_ms; S.stale = ev.stale_after_s; S.displayId = ev.display_id; S.history = ev.history;
      document.getElementById("display-id").textContent = ev.display_id;
      S.alerts = new Map(ev.alerts.map(v => [v.alert.alert_id, v]));
      S.carts = new Map(ev.carts.map(c => [c.key, c]));
      S.connected = ev.connection.connected; S.connDetail = ev.connection.detail;
      render(); showConnection(); stampRender([...S.alerts.keys()]);
      break;
    case "alert":
      S.alerts.set(ev.view.alert.alert_id, ev.view);
      while (S.alerts.size > S.history) forget(sorted().pop().alert.alert_id);
      render(); stampRender([ev.view.alert.alert_id]);
      if (ev.view.alert.finding.pneumothorax) beep();
      break;
    case "overlay": {
      const v = S.alerts.get(ev.alert_id);
      if (v && !v.overlay) { v.overlay = true; renderLatest(); }
      break;
    }
    case "cart": S.carts.set(ev.cart.key, ev.cart); renderCarts(); break;
    case "event": {
      const c = S.carts.get(ev.cart);
      if (c) { c.last_event = ev.event; renderCarts(); }
      break;
    }
    case "ack": {
      const v = S.alerts.get(ev.alert_id);
      if (v) { v.ack = ev.ack; v.ackQueued = v.ackQueued && ev.ack.display_id === S.displayId; render(); }
      break;
    }
    case "escalated": {
      const v = S.alerts.get(ev.alert_id);
      if (v) { v.escalations = ev.escalations; render(); beep(); }
      break;
    }
    case "connection": S.connected = ev.connected; S.connDetail = ev.detail; showConnection(); break;
  }
}
function connect() {
  const es = new EventSource("/api/v1/events");
  es.onopen = () => { S.serverUp = true; showConnection(); };
  es.onmessage = (e) => handle(JSON.parse(e.data));
  es.onerror = () => { S.serverUp = false; showConnection(); };
}
setInterval(() => {
  renderCarts();
  for (const node of document.querySelectorAll(".study .ago")) node.textContent = fmtAgo((serverNow() - Date.parse(node.dataset.created)) / 1000);
  if (renderAlarm() && S.sound && Date.now() - S.lastBeep > 5000) beep();
}, 1000);
connect();
