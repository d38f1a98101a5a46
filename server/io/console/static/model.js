// The console's state, without the DOM: the realm's objects as the subscription pushes them,
// the presence events, and the online history. Pure (time is passed in), so the page only
// draws what these say, and the browser tests can call them directly.

// An id pattern (protocol.md 3): `*` matches any run of characters, everything else is
// literal. Matched segment by segment with indexOf, so it is linear, never backtracking.
export function compilePattern(pattern) {
  if (!pattern.includes("*")) return (id) => id === pattern;
  const parts = pattern.split("*");
  const first = parts[0];
  const last = parts[parts.length - 1];
  const middle = parts.slice(1, -1);
  return (id) => {
    if (id.length < first.length + last.length) return false;
    if (!id.startsWith(first) || !id.endsWith(last)) return false;
    let at = first.length;
    const end = id.length - last.length;
    for (const part of middle) {
      const found = id.indexOf(part, at);
      if (found < 0 || found + part.length > end) return false;
      at = found + part.length;
    }
    return true;
  };
}

// "Has a location": an object that never sent one has every number 0 and no time.
export function position(object) {
  const loc = object.loc;
  if (!loc || !(loc.tim || loc.lon || loc.lat)) return null;
  if (!Number.isFinite(loc.lat) || !Number.isFinite(loc.lon)) return null;
  return [loc.lat, loc.lon];
}

// The objects of one realm subscription. `apply` takes a push and returns what changed, so
// the page redraws only those: a `ful` push replaces everything (`reset`), a `dta` push adds,
// replaces and removes entries (protocol.md 6.3). `listed` are the ids that are new or whose
// status changed: only those change the object list (a move alone does not).
export class Fleet {
  constructor() {
    this.objects = new Map();
    this.online = 0;
  }

  apply(push) {
    const maps = push.obj || {};
    const changed = new Set();
    const removed = new Set();
    const listed = new Set();
    let reset = false;
    if (push.uty === "ful") {
      reset = true;
      for (const id of this.objects.keys()) removed.add(id);
      this.objects.clear();
      this.online = 0;
    }
    for (const kind of ["cre", "upd"]) {
      for (const [id, object] of Object.entries(maps[kind] || {})) {
        const old = this.objects.get(id);
        if (old === undefined || old.cst !== object.cst) listed.add(id);
        this._put(id, object);
        changed.add(id);
        removed.delete(id);
      }
    }
    for (const id of Object.keys(maps.del || {})) {
      const old = this.objects.get(id);
      if (old === undefined) continue;
      if (old.cst === "con") this.online -= 1;
      this.objects.delete(id);
      changed.delete(id);
      listed.delete(id);
      removed.add(id);
    }
    return { changed, removed, listed, reset };
  }

  _put(id, object) {
    const old = this.objects.get(id);
    if (old !== undefined && old.cst === "con") this.online -= 1;
    if (object.cst === "con") this.online += 1;
    this.objects.set(id, object);
  }

  get total() {
    return this.objects.size;
  }

  // Up to `limit` objects whose id contains `text` (case-insensitive), or matches it as a
  // pattern when it has a `*`; sorted by id. Returns the page and how many matched in all.
  search(text, limit) {
    const wanted = text.trim();
    let test;
    if (wanted.includes("*")) test = compilePattern(wanted);
    else {
      const lower = wanted.toLowerCase();
      test = (id) => id.toLowerCase().includes(lower);
    }
    const ids = [];
    for (const id of this.objects.keys()) if (!wanted || test(id)) ids.push(id);
    ids.sort();
    return { ids: ids.slice(0, limit), matched: ids.length };
  }
}

// The connectionStatusChanged events seen, newest last, at most `capacity` of them.
export class EventLog {
  constructor(capacity = 1000) {
    this.capacity = capacity;
    this.events = [];
    this.times = [];
  }

  add(time, id, cst) {
    this.events.push({ time, id, cst });
    if (this.events.length > this.capacity) this.events.shift();
    this.times.push(time);
  }

  // Events per second over the last `window` seconds before `now`.
  rate(now, window = 10) {
    const since = now - window * 1000;
    while (this.times.length && this.times[0] < since) this.times.shift();
    return this.times.length / window;
  }

  // The newest `limit` events whose id matches `pattern` (every event for "" or "*").
  matching(pattern, limit) {
    const test = pattern && pattern !== "*" ? compilePattern(pattern) : () => true;
    const found = [];
    for (let i = this.events.length - 1; i >= 0 && found.length < limit; i--) {
      if (test(this.events[i].id)) found.push(this.events[i]);
    }
    return found;
  }
}

// Online and total counts sampled over time, for the sparkline.
export class History {
  constructor(span = 600_000) {
    this.span = span;
    this.samples = [];
  }

  add(time, online, total) {
    this.samples.push({ time, online, total });
    while (this.samples.length && this.samples[0].time < time - this.span) this.samples.shift();
  }

  // SVG polyline points of the online count over the span ending at `now`, scaled to the
  // largest total seen, in a `width` x `height` box.
  points(now, width, height) {
    const top = Math.max(1, ...this.samples.map((s) => s.total));
    return this.samples
      .map((s) => {
        const x = width - ((now - s.time) / this.span) * width;
        const y = height - (s.online / top) * height;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(" ");
  }
}

// -- the admin panel -----------------------------------------------------------------------

// "a, b, c and 7 more": a gateway may provide thousands of ids, a sub may have many
// connections, and a table cell or a status line should stay a line or two.
function someOf(items, limit) {
  const shown = items.slice(0, limit).join(", ");
  return items.length > limit ? `${shown} and ${items.length - limit} more` : shown;
}

function counted(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// A connection's `dpv` claim ({realmPattern: [idPattern, ...]}) written the way `--dpv`
// flags are (`london:riders/r03`); "—" for a connection that provides nothing.
export function providesText(dpv, limit = 3) {
  const entries = Object.entries(dpv || {}).flatMap(([realm, ids]) =>
    (Array.isArray(ids) ? ids : []).map((id) => `${realm}:${id}`),
  );
  return entries.length ? someOf(entries, limit) : "—";
}

// In a cluster, the nodes that did not answer in time: the operator must know that the
// list lacks their connections, or that a disconnect may have left theirs open.
export function unansweredText(nodes, consequence) {
  if (!nodes || !nodes.length) return "";
  const which = nodes.length === 1 ? `node ${nodes[0]}` : `nodes ${someOf(nodes, 5)}`;
  return `No answer from ${which}: ${consequence}.`;
}

// The reply to `adm dis` in words: how many connections closed, and whose.
export function disconnectSummary(reply) {
  const closed = reply.disconnected || [];
  if (!closed.length) return "Nothing closed: the connection had already gone.";
  const who = someOf(closed.map((entry) => entry.sub ?? entry.id), 3);
  return `Closed ${counted(closed.length, "connection")} (${who}).`;
}

// The target of a provider's Disconnect in the object panel: its token (`jti`) when it has
// one, so only that provider goes; otherwise every connection of its `sub`.
export function providerTarget(provider) {
  if (provider.jti) return { jti: provider.jti };
  if (provider.sub) return { sub: provider.sub };
  return null;
}

export function connectionsSummary(count, realm) {
  return `${counted(count, "connection")} in realm ${realm}`;
}

// When a connection opened: the time of day, with the date when that was not today.
export function sinceText(iso, now) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return String(iso ?? "—");
  return at.toDateString() === now.toDateString() ? at.toLocaleTimeString() : at.toLocaleString();
}
