// The console page: sign in, follow one realm, draw it.
//
// Pushes only change the model (model.js) and mark what changed; everything visible is
// redrawn once per animation frame from those marks, so 10,000 objects moving every second
// cost one canvas redraw per frame, not one per update. Markers are Leaflet circle markers
// on one canvas renderer: status is shown by shape (filled disc / ring) as well as colour.
// All text from the server goes in with textContent, never as HTML.

import { AuthError, HivekitClient, RequestError, tokenClaims } from "./hivekit.js";
import { EventLog, Fleet, History, position } from "./model.js";
import { AdminPanel, isAdmin } from "./admin.js";

const SUB_ID = "console-objects";
const EVENT = "connectionStatusChanged";
const TOKEN_KEY = "hivectl-console-token";
const LIST_LIMIT = 200;
const EVENT_ROWS = 200;
const LIST_EVERY_MS = 500;
const SAMPLE_EVERY_MS = 5000;
const AUTO_FIT_MS = 4000;
const COLOURS = { con: "#1a7f37", dis: "#57606a", selected: "#0969da" };
const STATUS_TEXT = { con: "● connected", dis: "○ disconnected" };

const $ = (id) => document.getElementById(id);

const view = {
  client: null,
  claims: null,
  admin: null,
  realm: null,
  fleet: new Fleet(),
  events: new EventLog(),
  history: new History(),
  map: null,
  renderer: null,
  layer: null,
  markers: new Map(),
  moved: new Set(),
  gone: new Set(),
  listDirty: true,
  eventsDirty: true,
  listAt: 0,
  frameRequested: false,
  selected: null,
  autoFitUntil: 0,
  updates: 0,
  updateRate: 0,
  frames: { count: 0, busyMs: 0, worstMs: 0 },
  active: { objects: null, events: null },
  presenceAsked: 0,
};

// -- signing in --------------------------------------------------------------------------

function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const realm = params.get("realm");
  // The token never stays in the address bar, the history or a bookmark.
  history.replaceState(null, "", location.pathname + location.search + realmHash(realm));
  return { token, realm };
}

function realmHash(realm) {
  return realm ? `#realm=${encodeURIComponent(realm)}` : "";
}

function showAlert(text) {
  const alert = $("alert");
  alert.textContent = text;
  alert.hidden = !text;
}

function showLogin(realm) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  if (realm) $("realm-input").value = realm;
  $("token-input").focus();
}

async function start(token, realm, tileUrl) {
  showAlert("");
  view.claims = tokenClaims(token);
  const client = new HivekitClient(socketUrl(), token, { onState, onError });
  view.client = client;
  try {
    await client.connect();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    const why = error instanceof AuthError ? error.message : String(error);
    showAlert(`The server refused the token: ${why}.`);
    showLogin(realm);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = describeToken(view.claims);
  view.admin.signedIn(view.claims);
  if (!view.map) makeMap(tileUrl);
  else view.map.invalidateSize();
  const realms = await listRealms(realm);
  const chosen = realm || realms[0];
  if (!chosen) {
    showAlert("This token may read no realm: mint one with read rights, e.g. --per 'REALM:*=R'.");
    return;
  }
  await openRealm(chosen);
}

function socketUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function describeToken(claims) {
  if (!claims) return "";
  const who = `${claims.sub ?? "(no sub)"}${isAdmin(claims) ? " (admin)" : ""}`;
  const parts = [`signed in as ${who}`];
  if (claims.exp) parts.push(`token expires ${new Date(claims.exp * 1000).toLocaleTimeString()}`);
  return parts.join(", ");
}

function onState(state, why) {
  const line = $("connection");
  line.dataset.state = state;
  line.textContent = why ? `${state}: ${why}` : state;
  if (state === "closed" && /4001/.test(why || "")) {
    sessionStorage.removeItem(TOKEN_KEY);
    showAlert("The token expired: paste a new one, or run hivectl console again.");
    showLogin(view.realm);
  }
}

function onError(error) {
  showAlert(error instanceof Error ? error.message : String(error));
}

async function listRealms(wanted) {
  let realms = [];
  try {
    realms = Object.keys(await view.client.request({ typ: "rea", act: "lis" })).sort();
  } catch (error) {
    showAlert(`Cannot list realms: ${error.message}`);
  }
  if (wanted && !realms.includes(wanted)) realms.unshift(wanted);
  const select = $("realm");
  select.replaceChildren(
    ...realms.map((id) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      return option;
    }),
  );
  return realms;
}

// -- following a realm -------------------------------------------------------------------

async function openRealm(realm) {
  const client = view.client;
  if (view.realm) {
    const old = view.realm;
    await Promise.allSettled([
      client.unsubscribeObjects(old, SUB_ID),
      client.unsubscribeEvent(old, EVENT, "*"),
    ]);
  }
  view.realm = realm;
  $("realm").value = realm;
  history.replaceState(null, "", location.pathname + location.search + realmHash(realm));
  for (const id of view.fleet.objects.keys()) view.gone.add(id);
  view.fleet = new Fleet();
  view.events = new EventLog();
  view.history = new History();
  view.listDirty = view.eventsDirty = true;
  view.autoFitUntil = performance.now() + AUTO_FIT_MS;
  closeDetails();
  view.admin.follow(realm);
  try {
    await client.subscribeEvent(realm, EVENT, "*", onPresenceEvent);
    await client.subscribeObjects(realm, SUB_ID, onPush);
    showAlert("");
  } catch (error) {
    const text = error instanceof RequestError ? error.message : String(error);
    showAlert(`Cannot follow realm ${realm}: ${text}`);
  }
  requestFrame();
}

function onPush(push) {
  const { changed, removed, listed, reset } = view.fleet.apply(push);
  for (const id of removed) view.gone.add(id);
  for (const id of changed) view.moved.add(id);
  view.updates += changed.size;
  if (reset || removed.size || listed.size) view.listDirty = true;
  if (view.selected !== null && listed.has(view.selected)) askPresence(view.selected);
  requestFrame();
}

function onPresenceEvent(id, payload) {
  view.events.add(Date.now(), id, payload && payload.cst);
  view.eventsDirty = true;
  requestFrame();
}

// -- drawing, once per frame -------------------------------------------------------------

function requestFrame() {
  if (view.frameRequested) return;
  view.frameRequested = true;
  requestAnimationFrame(drawFrame);
}

function drawFrame(now) {
  view.frameRequested = false;
  const started = performance.now();
  let created = false;
  for (const id of view.gone) {
    const marker = view.markers.get(id);
    if (marker && !view.fleet.objects.has(id)) {
      view.layer.removeLayer(marker);
      view.markers.delete(id);
    }
  }
  view.gone.clear();
  for (const id of view.moved) created = placeMarker(id) || created;
  if (view.selected !== null && view.moved.has(view.selected)) showDetails();
  view.moved.clear();
  if (created && now < view.autoFitUntil) fitAll();
  $("online").textContent = view.fleet.online;
  $("total").textContent = view.fleet.total;
  $("unplaced").textContent = view.fleet.total - view.markers.size;
  if (view.eventsDirty) drawEvents();
  if (view.listDirty) {
    if (now - view.listAt >= LIST_EVERY_MS) drawObjects(now);
    else setTimeout(requestFrame, LIST_EVERY_MS);
  }
  const busy = performance.now() - started;
  view.frames.count += 1;
  view.frames.busyMs += busy;
  view.frames.worstMs = Math.max(view.frames.worstMs, busy);
}

// Returns whether a marker was created.
function placeMarker(id) {
  const object = view.fleet.objects.get(id);
  const marker = view.markers.get(id);
  const where = object && position(object);
  if (!where) {
    if (marker) {
      view.layer.removeLayer(marker);
      view.markers.delete(id);
    }
    return false;
  }
  if (!marker) {
    const created = L.circleMarker(where, markerStyle(object.cst, id === view.selected));
    created.objectId = id;
    created.status = object.cst;
    created.on("click", () => select(id, { pan: false }));
    view.layer.addLayer(created);
    view.markers.set(id, created);
    return true;
  }
  const at = marker.getLatLng();
  if (at.lat !== where[0] || at.lng !== where[1]) marker.setLatLng(where);
  if (marker.status !== object.cst) {
    marker.status = object.cst;
    marker.setStyle(markerStyle(object.cst, id === view.selected));
  }
  return false;
}

function markerStyle(cst, selected) {
  const connected = cst === "con";
  return {
    renderer: view.renderer,
    radius: selected ? 9 : 5,
    weight: selected ? 3 : 2,
    color: selected ? COLOURS.selected : COLOURS[connected ? "con" : "dis"],
    fill: connected,
    fillColor: COLOURS.con,
    fillOpacity: connected ? 0.85 : 0,
  };
}

function fitAll() {
  const points = [...view.markers.values()].map((marker) => marker.getLatLng());
  if (points.length === 1) view.map.setView(points[0], 15);
  else if (points.length) view.map.fitBounds(L.latLngBounds(points), { padding: [24, 24] });
}

function makeMap(tileUrl) {
  view.renderer = L.canvas({ padding: 0.2 });
  const map = L.map("map", { preferCanvas: true, renderer: view.renderer, keyboard: true });
  map.setView([20, 0], 2);
  L.control.scale({ imperial: false }).addTo(map);
  view.layer = L.layerGroup().addTo(map);
  view.map = map;
  const container = map.getContainer();
  for (const kind of ["pointerdown", "wheel", "keydown"]) {
    container.addEventListener(kind, () => (view.autoFitUntil = 0), { passive: true });
  }
  const notice = $("map-notice");
  if (!tileUrl) {
    notice.textContent = "No map tiles configured ([console] tile_url): plain background.";
    notice.hidden = false;
    return;
  }
  const attribution = tileUrl.includes("openstreetmap.org")
    ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
    : "";
  const tiles = L.tileLayer(tileUrl, { maxZoom: 19, attribution });
  let loaded = 0;
  tiles.on("tileload", () => {
    loaded += 1;
    notice.hidden = true;
  });
  tiles.on("tileerror", () => {
    if (loaded) return;
    notice.textContent = `Map tiles cannot be fetched from ${new URL(tileUrl.replace(/[{}]/g, "")).host}: plain background.`;
    notice.hidden = false;
  });
  tiles.addTo(map);
}

// -- the lists ---------------------------------------------------------------------------

function statusSpan(cst) {
  const span = document.createElement("span");
  span.className = cst === "con" ? "state-con" : "state-dis";
  span.textContent = STATUS_TEXT[cst] || STATUS_TEXT.dis;
  return span;
}

function row(id, cst, parts) {
  const li = document.createElement("li");
  li.dataset.objectId = id;
  li.dataset.status = cst === "con" ? "connected" : "disconnected";
  if (id === view.selected) li.setAttribute("aria-current", "true");
  const button = document.createElement("button");
  button.type = "button";
  button.tabIndex = -1;
  button.append(...parts);
  li.append(button);
  return li;
}

function idSpan(id) {
  const span = document.createElement("span");
  span.className = "id";
  span.textContent = id;
  return span;
}

function drawObjects(now) {
  view.listDirty = false;
  view.listAt = now;
  const { ids, matched } = view.fleet.search($("search").value, LIST_LIMIT);
  const rows = ids.map((id) => {
    const cst = view.fleet.objects.get(id).cst;
    return row(id, cst, [idSpan(id), statusSpan(cst)]);
  });
  replaceRows($("objects"), rows, "objects");
  const total = view.fleet.total;
  $("objects-count").textContent =
    matched > ids.length
      ? `showing ${ids.length} of ${matched} matching (of ${total}); refine the search`
      : `${matched} of ${total} objects`;
}

function drawEvents() {
  view.eventsDirty = false;
  const rows = view.events.matching($("event-filter").value.trim(), EVENT_ROWS).map((event) => {
    const time = document.createElement("time");
    time.dateTime = new Date(event.time).toISOString();
    time.textContent = new Date(event.time).toLocaleTimeString();
    return row(event.id, event.cst, [time, idSpan(event.id), statusSpan(event.cst)]);
  });
  replaceRows($("events"), rows, "events");
}

// Redraws a list keeping keyboard focus on the same row: one row is in the tab order
// (roving tabindex), the arrow keys move between rows, Enter shows the object.
function replaceRows(list, rows, which) {
  const focused = list.contains(document.activeElement)
    ? document.activeElement.closest("li")?.dataset.objectId
    : null;
  list.replaceChildren(...rows);
  const buttons = list.querySelectorAll("button");
  if (!buttons.length) return;
  const active =
    [...buttons].find((b) => b.parentElement.dataset.objectId === view.active[which]) ||
    buttons[0];
  active.tabIndex = 0;
  if (focused !== null && focused !== undefined) {
    const again = [...buttons].find((b) => b.parentElement.dataset.objectId === focused);
    (again || active).focus();
  }
}

function listKeys(list, which) {
  list.addEventListener("keydown", (event) => {
    const buttons = [...list.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const to = {
      ArrowDown: Math.min(at + 1, buttons.length - 1),
      ArrowUp: Math.max(at - 1, 0),
      Home: 0,
      End: buttons.length - 1,
    }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    buttons[at].tabIndex = -1;
    buttons[to].tabIndex = 0;
    buttons[to].focus();
    view.active[which] = buttons[to].parentElement.dataset.objectId;
  });
  list.addEventListener("click", (event) => {
    const item = event.target.closest("li");
    if (!item) return;
    view.active[which] = item.dataset.objectId;
    // A keyboard "click" (Enter, Space) has detail 0: move focus to the details then.
    select(item.dataset.objectId, { pan: true, focus: event.detail === 0 });
  });
}

// -- one object --------------------------------------------------------------------------

function select(id, { pan = true, focus = false } = {}) {
  const before = view.selected;
  view.selected = id;
  for (const which of [before, id]) {
    const marker = view.markers.get(which);
    if (marker) marker.setStyle(markerStyle(marker.status, which === id));
  }
  for (const item of document.querySelectorAll(".rows li")) {
    if (item.dataset.objectId === id) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
  const marker = view.markers.get(id);
  if (marker) {
    marker.bringToFront();
    if (pan) view.map.panTo(marker.getLatLng());
  }
  $("details").hidden = false;
  if (id !== before) $("providers-result").textContent = "";
  showDetails();
  askPresence(id);
  if (focus) $("details-heading").focus();
}

function closeDetails() {
  const id = view.selected;
  view.selected = null;
  $("details").hidden = true;
  const marker = view.markers.get(id);
  if (marker) marker.setStyle(markerStyle(marker.status, false));
  const item = document.querySelector(`#objects li[aria-current="true"] button`);
  for (const current of document.querySelectorAll(".rows li[aria-current]")) {
    current.removeAttribute("aria-current");
  }
  return item;
}

function fields(list, pairs) {
  list.replaceChildren(
    ...pairs.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}

function showDetails() {
  const id = view.selected;
  const object = view.fleet.objects.get(id);
  $("details-heading").textContent = id;
  const status = $("details-status");
  status.dataset.status = object?.cst === "con" ? "connected" : "disconnected";
  status.replaceChildren(object ? statusSpan(object.cst) : "no longer in this realm");
  if (!object) return;
  const where = position(object);
  const loc = object.loc || {};
  fields($("details-fields"), [
    ["label", object.lab || "—"],
    ["location", where ? `${where[0].toFixed(5)}, ${where[1].toFixed(5)}` : "none"],
    ["located at", loc.tim || "—"],
    ["speed", loc.spe ? `${loc.spe} m/s` : "—"],
    ["heading", loc.hea ? `${loc.hea}°` : "—"],
    ["tasks", (object.tds || []).join(", ") || "—"],
  ]);
  $("details-data").textContent = JSON.stringify(object.dat ?? {}, null, 2);
}

// The presence explanation (`sys pre`): why the object is online, and who holds it.
async function askPresence(id) {
  const asked = ++view.presenceAsked;
  let explained;
  try {
    explained = await view.client.request({ typ: "sys", act: "pre", rea: view.realm, id });
  } catch (error) {
    if (asked === view.presenceAsked) $("presence-summary").textContent = error.message;
    return;
  }
  if (asked !== view.presenceAsked || view.selected !== id) return;
  const providers = explained.providers || [];
  $("presence-summary").textContent =
    providers.length === 0
      ? "No provider holds it."
      : `Held by ${providers.length} provider${providers.length === 1 ? "" : "s"}.`;
  $("providers-action").hidden = !view.admin.enabled;
  $("providers").tBodies[0].replaceChildren(
    ...providers.map((provider) => {
      const tr = document.createElement("tr");
      for (const key of ["sub", "jti", "node", "since"]) {
        const td = document.createElement("td");
        td.textContent = provider[key] ?? "—";
        tr.append(td);
      }
      if (view.admin.enabled) tr.append(view.admin.providerCell(provider));
      return tr;
    }),
  );
  $("providers").hidden = providers.length === 0;
  fields(
    $("ledger"),
    [
      ["connected since", explained.connectedSince],
      ["last seen", explained.lastSeen],
      ["last disconnected", explained.lastDisconnectedAt],
      ["last reason", explained.lastReason],
      ["grace until", explained.graceUntil],
    ].filter(([, value]) => value !== undefined && value !== null),
  );
}

// -- every second: rates and the sparkline -----------------------------------------------

function tick() {
  const now = Date.now();
  $("event-rate").textContent = view.events.rate(now).toFixed(1);
  view.updateRate = view.updates;
  view.updates = 0;
  $("update-rate").textContent = String(view.updateRate);
  if (!view.sampledAt || now - view.sampledAt >= SAMPLE_EVERY_MS) {
    view.sampledAt = now;
    view.history.add(now, view.fleet.online, view.fleet.total);
    $("sparkline-line").setAttribute("points", view.history.points(now, 120, 24));
    const counts = view.history.samples.map((s) => s.online);
    $("sparkline-text").textContent =
      `online over the last ${Math.round(view.history.span / 60000)} minutes: ` +
      `from ${Math.min(...counts)} to ${Math.max(...counts)}, now ${view.fleet.online}`;
  }
}

// -- wiring ------------------------------------------------------------------------------

function wire(tileUrl) {
  view.admin = new AdminPanel((message) => view.client.request(message));
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    const realm = $("realm-input").value.trim() || null;
    $("token-input").value = "";
    start(token, realm, tileUrl);
  });
  $("realm").addEventListener("change", (event) => openRealm(event.target.value));
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    view.client?.close();
    location.replace(location.pathname);
  });
  $("search").addEventListener("input", () => {
    view.listDirty = true;
    view.listAt = 0;
    requestFrame();
  });
  $("search").addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      $("objects").querySelector("button")?.focus();
    } else if (event.key === "Enter") {
      const { ids } = view.fleet.search(event.target.value, 2);
      const exact = view.fleet.objects.has(event.target.value.trim());
      if (exact || ids.length === 1) select(exact ? event.target.value.trim() : ids[0]);
    }
  });
  $("event-filter").addEventListener("input", () => {
    view.eventsDirty = true;
    requestFrame();
  });
  $("details-close").addEventListener("click", () => {
    const item = closeDetails();
    (item || $("search")).focus();
  });
  document.addEventListener("keydown", (event) => {
    // Escape in the disconnect confirmation cancels it, and only it.
    if (event.key === "Escape" && view.selected !== null && !event.target.closest("dialog")) {
      const item = closeDetails();
      (item || $("search")).focus();
    }
  });
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("search").focus();
  });
  listKeys($("objects"), "objects");
  listKeys($("events"), "events");
  setInterval(tick, 1000);
}

// What scripts (and the browser tests) may read: markers are drawn on a canvas, so their
// id and status are here rather than in the DOM.
window.hivectlConsole = {
  get realm() {
    return view.realm;
  },
  get online() {
    return view.fleet.online;
  },
  get total() {
    return view.fleet.total;
  },
  markers() {
    return [...view.markers.values()].map((marker) => ({
      id: marker.objectId,
      status: marker.status === "con" ? "connected" : "disconnected",
      lat: marker.getLatLng().lat,
      lon: marker.getLatLng().lng,
    }));
  },
  marker(id) {
    const marker = view.markers.get(id);
    if (!marker) return null;
    const at = view.map.latLngToContainerPoint(marker.getLatLng());
    return {
      id,
      status: marker.status === "con" ? "connected" : "disconnected",
      x: at.x,
      y: at.y,
    };
  },
  frames() {
    return { ...view.frames };
  },
  select,
};

async function main() {
  let tileUrl = "";
  try {
    tileUrl = (await (await fetch("config.json")).json()).tileUrl || "";
  } catch {
    showAlert("Cannot read the console's settings from the server.");
  }
  wire(tileUrl);
  const { token, realm } = readFragment();
  const chosen = token || sessionStorage.getItem(TOKEN_KEY);
  if (chosen) await start(chosen, realm, tileUrl);
  else showLogin(realm);
}

main();
