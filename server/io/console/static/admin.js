// The console's admin part (issue 16), for a token with the admin grant (`adm: true`, as
// `hivectl console --admin` mints it): the Connections panel, the realm's live connections
// with a Disconnect button on each, and a Disconnect button per provider in the object
// panel. Both use the server's admin operations (`adm con`, `adm dis`,
// server/handlers/admin.py) and ask first in an in-page dialog. The claims only decide what
// is offered; the server decides what is allowed, and a refusal (403) is shown as text.

import {
  connectionsSummary,
  disconnectSummary,
  providerTarget,
  providesText,
  sinceText,
  unansweredText,
} from "./model.js";

const REFRESH_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);

export function isAdmin(claims) {
  return claims?.adm === true;
}

export class AdminPanel {
  // `request(message)` resolves with the reply's data or rejects with a RequestError
  // (HivekitClient.request of whichever client is signed in).
  constructor(request) {
    this.request = request;
    this.enabled = false;
    this.ownJti = null;
    this.realm = null;
    this.asked = 0;
    this.section = $("connections-panel");
    this.body = $("connections").tBodies[0];
    $("connections-refresh").addEventListener("click", () => this.refresh());
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest("button")?.closest("tr");
      if (row) this.disconnectRow(row.dataset);
    });
    wireDialog();
    // The list holds still while a confirmation is open, so the row being confirmed (and
    // the button focus goes back to) stays where it is.
    setInterval(() => {
      if (this.enabled && document.visibilityState === "visible" && !$("disconnect-dialog").open) {
        this.refresh();
      }
    }, REFRESH_EVERY_MS);
  }

  signedIn(claims) {
    this.enabled = isAdmin(claims);
    this.ownJti = claims?.jti ?? null;
    this.section.hidden = !this.enabled;
  }

  follow(realm) {
    this.realm = realm;
    this.body.replaceChildren();
    show($("connections-result"), "");
    this.refresh();
  }

  async refresh() {
    if (!this.enabled || this.realm === null) return;
    const asked = ++this.asked;
    const realm = this.realm;
    let reply;
    try {
      reply = await this.request({ typ: "adm", act: "con", dat: { realm } });
    } catch (error) {
      if (asked !== this.asked) return;
      show($("connections-status"), `▲ Cannot list connections: ${error.message}`, "error");
      $("connections-warning").hidden = true;
      this.draw([]);
      return;
    }
    if (asked !== this.asked) return; // a newer answer, perhaps for another realm, is coming
    const connections = reply.connections || [];
    const summary = connectionsSummary(connections.length, realm);
    show($("connections-status"), `${summary}, updated ${new Date().toLocaleTimeString()}`);
    const warning = unansweredText(reply.unanswered, "their connections are not listed");
    $("connections-warning").textContent = `▲ ${warning}`;
    $("connections-warning").hidden = !warning;
    this.draw(connections);
  }

  // A list with the same connections in the same order is updated in place, so a focused
  // button stays the same element (and a screen reader quiet) every 5 seconds. Otherwise
  // the rows are redrawn with focus kept on the same row's button, or, when that row has
  // gone, on the Refresh button rather than nowhere.
  draw(connections) {
    const now = new Date();
    const rows = [...this.body.rows];
    const same =
      rows.length === connections.length &&
      rows.every((row, at) => row.dataset.connectionId === connections[at].id);
    if (same) {
      rows.forEach((row, at) => fill(row, connections[at], now));
      return;
    }
    const focused = this.body.contains(document.activeElement)
      ? document.activeElement.closest("tr").dataset.connectionId
      : null;
    this.body.replaceChildren(...connections.map((connection) => this.row(connection, now)));
    if (focused === null) return;
    const again = [...this.body.rows].find((row) => row.dataset.connectionId === focused);
    (again?.querySelector("button") || $("connections-refresh")).focus();
  }

  row(connection, now) {
    const tr = document.createElement("tr");
    tr.dataset.connectionId = connection.id;
    tr.dataset.who = connection.sub ?? connection.id;
    const sub = cell(null, connection.sub ?? "(no sub)");
    sub.className = "sub";
    if (this.ownJti !== null && connection.jti === this.ownJti) {
      tr.dataset.own = "true";
      const own = document.createElement("span");
      own.className = "own";
      own.textContent = " (this console's token)";
      sub.append(own);
    }
    const action = cell(null, disconnectButton(tr.dataset.who));
    action.className = "action";
    tr.append(sub, ...FIELDS.map(([label]) => cell(label, "")), action);
    fill(tr, connection, now);
    return tr;
  }

  async disconnectRow({ connectionId: id, who, own }) {
    const result = $("connections-result");
    // This page's own connection comes back at once (the client reconnects), but the
    // answer to the request may be lost with the connection it was sent on.
    const what =
      `The connection ${id} of ${who}.` +
      (own ? " It uses this console's token: if it is this page's, the page reconnects." : "");
    const answer = await confirmDisconnect(what, { result, home: $("connections-heading") });
    if (!answer) return;
    await this.disconnect({ conn: id, ...answer }, result);
    await this.refresh();
  }

  // The last cell of a provider's row in the object panel: Disconnect by its token (jti),
  // or by its sub when the token has no jti.
  providerCell(provider) {
    const td = document.createElement("td");
    const target = providerTarget(provider);
    if (!target) return td;
    const result = $("providers-result");
    const what = target.jti
      ? `Every connection using the token ${target.jti} (sub ${provider.sub ?? "—"}).`
      : `Every connection of sub ${target.sub}.`;
    const button = disconnectButton(provider.sub ?? provider.jti);
    button.addEventListener("click", async () => {
      const answer = await confirmDisconnect(what, { result, home: $("details-heading") });
      if (!answer) return;
      await this.disconnect({ ...target, ...answer }, result);
      this.refresh();
    });
    td.append(button);
    return td;
  }

  async disconnect(dat, result) {
    try {
      const reply = await this.request({ typ: "adm", act: "dis", dat });
      const warning = unansweredText(reply.unanswered, "their connections may still be open");
      show(result, disconnectSummary(reply) + (warning ? ` ▲ ${warning}` : ""));
    } catch (error) {
      show(result, `▲ Cannot disconnect: ${error.message}`, "error");
    }
  }
}

// -- the confirmation --------------------------------------------------------------------

// The dialog is modal (showModal): focus moves into it, to the reason field, and stays
// there until Confirm (or Enter), Cancel or Escape. The form is never submitted anywhere:
// its submit event only closes the dialog, as the page's CSP allows no form action.
function wireDialog() {
  const dialog = $("disconnect-dialog");
  $("disconnect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    dialog.close("confirm");
  });
  $("disconnect-cancel").addEventListener("click", () => dialog.close("cancel"));
}

// Resolves with the `dat` options to add ({reason} when one was typed) on Confirm, null
// otherwise. Focus goes back to the button that asked on Cancel (to the panel's `home`
// heading if a redraw took that button away), and on Confirm to `result`, which says
// "Disconnecting…" until the outcome is there, since the asking row is about to go.
function confirmDisconnect(what, { result, home }) {
  const dialog = $("disconnect-dialog");
  const reason = $("disconnect-reason");
  const opener = document.activeElement;
  $("disconnect-what").textContent = what;
  reason.value = "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const confirmed = dialog.returnValue === "confirm";
        if (confirmed) {
          show(result, "Disconnecting…");
          result.focus();
        } else {
          (opener?.isConnected ? opener : home).focus();
        }
        const text = reason.value.trim();
        resolve(confirmed ? (text ? { reason: text } : {}) : null);
      },
      { once: true },
    );
    dialog.showModal();
    reason.focus();
  });
}

// -- small pieces ------------------------------------------------------------------------

// The labelled cells of a connection's row, between its sub and its Disconnect button.
const FIELDS = [
  ["node", (connection) => connection.node],
  ["remote", (connection) => connection.remote || "—"],
  ["provides", (connection) => providesText(connection.dpv)],
  ["since", (connection, now) => sinceTime(connection.since, now)],
  ["in", (connection) => String(connection.messagesIn)],
  ["out", (connection) => String(connection.messagesOut)],
  ["queued", (connection) => `${connection.queued} B`],
];

function fill(tr, connection, now) {
  FIELDS.forEach(([, value], at) => tr.cells[at + 1].replaceChildren(value(connection, now)));
}

function sinceTime(since, now) {
  const time = document.createElement("time");
  time.dateTime = since;
  time.title = since;
  time.textContent = sinceText(since, now);
  return time;
}

function disconnectButton(who) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "danger";
  const name = document.createElement("span");
  name.className = "visually-hidden";
  name.textContent = ` ${who}`;
  button.append("Disconnect", name);
  return button;
}

// A table cell; `label` is shown before the value, as the header row is visually hidden
// (the rows are stacked to fit the side bar).
function cell(label, content) {
  const td = document.createElement("td");
  if (label) td.dataset.label = label;
  td.append(content);
  return td;
}

function show(element, text, state) {
  element.textContent = text;
  if (state) element.dataset.state = state;
  else delete element.dataset.state;
}
