// The WebSocket to the server's live updates, kept open: on a drop it reconnects with
// exponential backoff (1 s doubling to 30 s, with jitter so a restarted server is not hit by
// every open page in the same instant), and it tells its listeners when it is (re)opened so
// they can reload what they may have missed.

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
// Close codes the server uses for "sign in again" (RFC 6455 policy violation, and 4401 as
// the private-use mirror of HTTP 401).
const AUTH_CLOSE_CODES = new Set([1008, 4401, 4403]);

/** A self-healing WebSocket; events: "state" (detail: connecting|open|closed), "message", "auth". */
export class LiveFeed extends EventTarget {
  constructor(path, subscribe) {
    super();
    this.path = path;
    this.subscribe = subscribe;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.state = "closed";
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "page closed");
    this.socket = null;
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    if (this.stopped) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.setState("connecting");
    const socket = new WebSocket(`${scheme}//${window.location.host}${this.path}`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      for (const message of this.subscribe()) socket.send(JSON.stringify(message));
      this.setState("open");
    });
    socket.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      this.dispatchEvent(new CustomEvent("message", { detail: data }));
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setState("closed");
      if (AUTH_CLOSE_CODES.has(event.code)) {
        this.dispatchEvent(new CustomEvent("auth", { detail: event.code }));
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
