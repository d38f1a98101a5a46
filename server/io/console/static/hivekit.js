// A small Hivekit protocol client for the browser (protocol.md): the same wire protocol as
// every other client, so the console sees exactly what any application would.
//
// Why our own: Hivekit's JavaScript SDK is not installable here, and the console needs only
// a few things: authenticate, requests matched by cid, object subscriptions, realm pub/sub,
// and a reconnect that re-sends the token and every subscription with the same ids.

export class AuthError extends Error {
  constructor(text, code) {
    super(text);
    this.name = "AuthError";
    this.code = code;
  }
}

export class RequestError extends Error {
  constructor(text, code) {
    super(text);
    this.name = "RequestError";
    this.code = code;
  }
}

const CLOSE_TEXT = {
  1001: "the server is going away",
  1008: "policy violation",
  1009: "message too big",
  1011: "server error",
  4001: "token expired",
  4008: "slow consumer: the console fell behind",
  4029: "rate limited",
};

// Reconnect attempt n waits a random time in [d/2, d], d = min(30 s, 1 s * 2^n), like the
// Python client, so a fleet of consoles does not hammer a restarted server at once.
export function backoffDelay(attempt, random = Math.random) {
  const d = Math.min(30000, 1000 * 2 ** attempt);
  return d / 2 + random() * (d / 2);
}

export class HivekitClient {
  constructor(url, token, { onState = () => {}, onError = () => {} } = {}) {
    this.url = url;
    this.token = token;
    this.onState = onState;
    this.onError = onError;
    this.socket = null;
    this.pending = new Map();
    this.nextCid = 1;
    this.objectSubs = new Map(); // sub id -> {realm, options, handler}
    this.eventSubs = new Map(); // "realm\0event\0pattern" -> {realm, event, pattern, handler}
    this.attempt = 0;
    this.stopped = false;
    this.authenticated = false;
  }

  // Resolves with the server's `aut` data; rejects with AuthError when the token is refused
  // (then no reconnect: a refused token stays refused).
  connect() {
    this.stopped = false;
    return new Promise((resolve, reject) => this._dial(resolve, reject));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "console closed");
  }

  request(message) {
    if (!this.authenticated) return Promise.reject(new RequestError("not connected", 0));
    const cid = `c${this.nextCid++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(cid, { resolve, reject });
      this._send([{ ...message, cid }]);
    });
  }

  // A whole-realm object subscription with `exe`: `handler` gets every push (`ful`, `dta`).
  async subscribeObjects(realm, subId, handler) {
    const options = { typ: "obj", sty: "rea", exe: true };
    this.objectSubs.set(subId, { realm, options, handler });
    await this.request({ typ: "sub", act: "cre", id: subId, rea: realm, dat: options });
  }

  async unsubscribeObjects(realm, subId) {
    this.objectSubs.delete(subId);
    await this.request({ typ: "sub", act: "del", id: subId, rea: realm });
  }

  // Realm pub/sub (protocol.md 6.4): `handler(idp, payload)` for each push.
  async subscribeEvent(realm, event, pattern, handler) {
    this.eventSubs.set(eventKey(realm, event, pattern), { realm, event, pattern, handler });
    await this.request({ typ: "rea", act: "sub", id: realm, dat: { eve: event, idp: pattern } });
  }

  async unsubscribeEvent(realm, event, pattern) {
    this.eventSubs.delete(eventKey(realm, event, pattern));
    await this.request({ typ: "rea", act: "uns", id: realm, dat: { eve: event, idp: pattern } });
  }

  _dial(resolve, reject) {
    this.onState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    let settled = false;
    socket.onopen = () => socket.send(`Bearer ${this.token}`);
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        this.onError(`unreadable frame from the server`);
        return;
      }
      for (const message of Array.isArray(frame) ? frame : [frame]) {
        if (message.typ === "sys" && message.act === "aut" && !message.cid) {
          if (message.res === "suc") {
            this.authenticated = true;
            this.onState("connected");
            this._restore();
            if (!settled) {
              settled = true;
              resolve(message.dat || {});
            }
          } else {
            this.stopped = true;
            socket.close(1000, "token refused");
            const error = new AuthError(message.err || "authentication failed", message.erc);
            if (!settled) {
              settled = true;
              reject(error);
            } else {
              this.onError(error);
            }
          }
        } else {
          this._dispatch(message);
        }
      }
    };
    socket.onclose = (event) => {
      const wasUp = this.authenticated;
      this.authenticated = false;
      for (const { reject: fail } of this.pending.values()) {
        fail(new RequestError("connection closed", 0));
      }
      this.pending.clear();
      const why = describeClose(event);
      if (event.code === 4001) this.stopped = true;
      if (this.stopped) {
        this.onState("closed", why);
        if (!settled) {
          settled = true;
          reject(new AuthError(why, event.code));
        }
        return;
      }
      if (wasUp) this.attempt = 0;
      const delay = backoffDelay(this.attempt++);
      this.onState("reconnecting", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
      this.retryTimer = setTimeout(() => this._dial(resolve, reject), delay);
    };
  }

  // After a reconnect: the same subscription ids again; `exe` brings the full state back.
  _restore() {
    for (const [subId, { realm, options }] of this.objectSubs) {
      this.request({ typ: "sub", act: "cre", id: subId, rea: realm, dat: options }).catch((e) =>
        this.onError(e),
      );
    }
    for (const { realm, event, pattern } of this.eventSubs.values()) {
      this.request({ typ: "rea", act: "sub", id: realm, dat: { eve: event, idp: pattern } }).catch(
        (e) => this.onError(e),
      );
    }
  }

  _dispatch(message) {
    if (message.cid !== undefined) {
      const waiting = this.pending.get(message.cid);
      if (!waiting) return;
      this.pending.delete(message.cid);
      if (message.res === "err") waiting.reject(new RequestError(message.err, message.erc));
      else waiting.resolve(message.dat);
      return;
    }
    if (message.typ === "sub" && message.uty) {
      const sub = this.objectSubs.get(message.id);
      if (sub) sub.handler(message);
      return;
    }
    if (message.typ === "rea" && message.act === "pub" && message.dat) {
      const sub = this.eventSubs.get(eventKey(message.rea, message.dat.eve, message.sid));
      if (sub) sub.handler(message.dat.idp, message.dat.dat);
      return;
    }
    if (message.res === "err") this.onError(new RequestError(message.err, message.erc));
  }

  _send(messages) {
    this.socket.send(JSON.stringify(messages));
  }
}

function eventKey(realm, event, pattern) {
  return `${realm}\u0000${event}\u0000${pattern}`;
}

export function describeClose(event) {
  const text = event.reason || CLOSE_TEXT[event.code] || "connection lost";
  return event.code && event.code !== 1006 ? `closed ${event.code}: ${text}` : text;
}

// The claims of a JWT, unverified (the server verifies): to show who the console is and when
// its token expires. Null when it is not a JWT.
export function tokenClaims(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}
