// One signaling WebSocket to a media node (protocol v1, docs/signaling.md): JSON text frames
// carrying "v": 1 and a "type", a keep-alive ping, and one close notification.

const PROTOCOL_VERSION = 1;
const PING_INTERVAL_MS = 15000;

export class Signaling {
  #socket;
  #ping = null;
  #closed = false;

  /** Called with each parsed message from the node. */
  onmessage = () => {};
  /** Called once when the socket closed, by either side. */
  onclose = () => {};

  constructor(socket) {
    this.#socket = socket;
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && message.v === PROTOCOL_VERSION && typeof message.type === 'string') {
        this.onmessage(message);
      }
    });
    socket.addEventListener('close', () => this.#ended());
    socket.addEventListener('error', () => this.#ended());
    this.#ping = setInterval(() => this.send('ping'), PING_INTERVAL_MS);
  }

  /** Opens a WebSocket to `url`, failing after `timeoutMs`. */
  static open(url, timeoutMs) {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(url);
      } catch (error) {
        reject(error);
        return;
      }
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error(`no answer from ${url} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      socket.addEventListener('open', () => {
        clearTimeout(timer);
        resolve(new Signaling(socket));
      });
      socket.addEventListener('error', () => {
        clearTimeout(timer);
        reject(new Error(`cannot open a WebSocket to ${url}`));
      });
    });
  }

  get open() {
    return !this.#closed && this.#socket.readyState === WebSocket.OPEN;
  }

  /** Sends a message of `type` with `fields`; dropped when the socket is not open. */
  send(type, fields = {}) {
    if (!this.open) return false;
    this.#socket.send(JSON.stringify({ v: PROTOCOL_VERSION, type, ...fields }));
    return true;
  }

  close() {
    if (this.#socket.readyState <= WebSocket.OPEN) this.#socket.close(1000);
    this.#ended();
  }

  #ended() {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#ping);
    this.onclose();
  }
}
