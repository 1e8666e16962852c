// The producer side of /ws/v1/sessions/{id}/stream (docs/protocol.md).
//
// Lossless resume: every audio frame stays in `frames` until the server has
// acknowledged it as durable (Ack.audio_bytes_durable). When the socket
// drops, the client asks for a fresh single-use token, reconnects, and the
// server's Begin.resume_from_byte says where its durable audio ends; the
// client resends from exactly there. Audio captured while disconnected is
// queued the same way, so the stored recording equals what was captured.
//
// No final is lost either: finals the server stored while the socket was
// already gone (the flush after a drop) never reached us, so a reconnect
// says how many finals this recording has received (`finals_received`) and
// the server re-sends the stored ones after those, right after Begin.

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 3000, 5000];
const MAX_ATTEMPTS = 40; // about three minutes of trying
// Closes after which reconnecting cannot help: protocol violation,
// forbidden (suspended clinic), not found.
const FATAL_CLOSE_CODES = new Set([4400, 4403, 4404]);
// Error codes that end the recording whatever the close code says.
const FATAL_ERROR_CODES = new Set(["taken_over", "session_ended", "not_found", "clinic_suspended"]);
const LIVENESS_TIMEOUT_MS = 10000;
const KEEPALIVE_EVERY_MS = 5000;
// The server accepts 20..1000 ms per binary frame (16 kHz PCM16: 640..32000
// bytes); resent audio is cut into 100 ms chunks within those bounds.
const MIN_FRAME_BYTES = 640;
const CHUNK_BYTES = 3200;

export class StreamError extends Error {
  constructor(code, detail) {
    super(code);
    this.code = code;
    this.detail = detail || "";
  }
}

export function socketUrl(streamUrl, token, extra = {}) {
  let url;
  if (/^wss?:\/\//.test(streamUrl)) {
    url = new URL(streamUrl);
  } else {
    url = new URL(streamUrl, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  }
  if (token) url.searchParams.set("token", token);
  for (const [key, value] of Object.entries(extra)) url.searchParams.set(key, value);
  return url.toString();
}

export class StreamClient {
  // url: the stream_url from the API; token: the first stream token;
  // freshToken(): resolves to a new token (POST .../stream-token/);
  // on: {state, transcript, ack, warning, queued, error, metadata} callbacks.
  // resuming: continue a consultation recorded earlier (another page, a
  // closed tab): the first connection takes over and asks for every stored
  // final, and the server's Begin says where its audio ends, from where
  // this client's byte offsets then count.
  constructor({ url, token, freshToken, on, keepCopy = false, resuming = false }) {
    this.url = url;
    this.nextToken = token;
    this.freshToken = freshToken;
    this.on = on || {};
    this.frames = []; // [{start, data}] sent or not yet sent, not yet durable
    this.produced = 0; // bytes handed to sendAudio()
    this.durable = 0;
    this.ws = null;
    this.ready = false; // Begin received on the current socket
    this.attempts = 0;
    this.closing = false;
    this.done = false;
    this.state = "idle";
    this.lastServerMessage = 0;
    this.lastClientSend = 0;
    this.metadata = null;
    this.lastError = null;
    this.reconnects = 0;
    this.finalIds = new Set(); // finals received over all connections
    this.copy = keepCopy ? [] : null; // tests compare it with the stored WAV
    this.carry = null; // resent bytes too short for a frame of their own
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    this.finished.catch(() => {}); // callers that never await it
    this.timer = null;
    this.resuming = resuming;
    this.rebase = resuming;
  }

  start() {
    this.timer = setInterval(() => this.tick(), 1000);
    this.connect();
  }

  setState(state, detail) {
    this.state = state;
    if (this.on.state) this.on.state(state, detail);
  }

  async connect() {
    if (this.done) return;
    this.setState(this.reconnects > 0 ? "reconnecting" : "connecting");
    let token = this.nextToken;
    this.nextToken = null;
    if (!token) {
      try {
        token = await this.freshToken();
      } catch (err) {
        if (err && err.permanent) return this.fail(new StreamError(err.code || "token_refused", err.message));
        return this.retryLater();
      }
    }
    if (this.done) return;
    // A reconnect replaces our own earlier connection, which the server may
    // still hold (a dead process keeps its claim until the lease expires).
    const resume = { takeover: "1", finals_received: String(this.finalIds.size) };
    const ws = new WebSocket(socketUrl(this.url, token, this.reconnects > 0 || this.resuming ? resume : {}));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    this.lastServerMessage = Date.now();
    ws.onmessage = (event) => {
      if (ws === this.ws) this.onMessage(event);
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.onClose(event);
    };
  }

  sendAudio(bytes) {
    if (this.done || this.closing) return;
    const frame = { start: this.produced, data: bytes };
    this.produced += bytes.length;
    this.frames.push(frame);
    if (this.copy) this.copy.push(bytes);
    if (this.ready && this.ws.readyState === WebSocket.OPEN) this.sendFrame(bytes);
  }

  // Sends audio in frames the server accepts: a piece shorter than 20 ms
  // waits (in `carry`) to be joined with the next one.
  sendFrame(bytes) {
    let data = bytes;
    if (this.carry) {
      data = concat([this.carry, bytes]);
      this.carry = null;
    }
    if (data.length < MIN_FRAME_BYTES) {
      this.carry = data;
      return;
    }
    this.ws.send(data);
    this.lastClientSend = Date.now();
  }

  // The last piece of a recording may be shorter than a frame: pad it with
  // silence (at most 20 ms) so nothing spoken is dropped.
  sendCarryPadded() {
    if (!this.carry) return;
    const padded = new Uint8Array(MIN_FRAME_BYTES);
    padded.set(this.carry);
    const extra = padded.subarray(this.carry.length);
    this.carry = null;
    this.produced += extra.length;
    this.frames.push({ start: this.produced - extra.length, data: extra });
    if (this.copy) this.copy.push(extra);
    this.ws.send(padded);
  }

  // Flush and close: resolves with the Metadata message once the server has
  // persisted everything; if the socket is down, this waits for the resume.
  finish() {
    if (!this.closing) {
      this.closing = true;
      if (this.ready) {
        this.sendCarryPadded();
        this.sendJson({ type: "CloseStream" });
      }
      if (this.state === "live") this.setState("finishing");
    }
    return this.finished;
  }

  abort() {
    this.done = true;
    clearInterval(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  sendJson(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      this.lastClientSend = Date.now();
    }
  }

  onMessage(event) {
    this.lastServerMessage = Date.now();
    if (typeof event.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (msg.type) {
      case "Begin":
        this.onBegin(msg);
        break;
      case "Ack":
        this.onAck(msg.audio_bytes_durable);
        break;
      case "Transcript":
        if (msg.is_final) this.finalIds.add(msg.segment_id);
        if (this.on.transcript) this.on.transcript(msg);
        break;
      case "Warning":
        if (this.on.warning) this.on.warning(msg);
        break;
      case "Queued":
        if (this.on.queued) this.on.queued(msg);
        break;
      case "Error":
        this.lastError = msg;
        if (this.on.error) this.on.error(msg);
        break;
      case "Metadata":
        this.metadata = msg;
        if (this.on.metadata) this.on.metadata(msg);
        break;
      default:
        break;
    }
  }

  onBegin(msg) {
    const resumeFrom = Number(msg.resume_from_byte || 0);
    if (this.rebase) {
      // What this page captured so far follows the stored audio.
      this.rebase = false;
      for (const frame of this.frames) frame.start += resumeFrom;
      this.produced += resumeFrom;
      this.durable = resumeFrom;
    }
    this.onAck(resumeFrom);
    const first = this.frames[0];
    const oldestHeld = first ? first.start : this.produced;
    if (resumeFrom < oldestHeld) {
      // The server lost audio it had acknowledged: nothing here can mend it.
      return this.fail(new StreamError("resume_gap", `${resumeFrom} < ${oldestHeld}`));
    }
    this.ready = true;
    this.attempts = 0;
    this.lastError = null;
    this.carry = null;
    const pieces = [];
    for (const frame of this.frames) {
      const end = frame.start + frame.data.length;
      if (end <= resumeFrom) continue;
      const skip = Math.max(0, resumeFrom - frame.start);
      pieces.push(skip ? frame.data.subarray(skip) : frame.data);
    }
    const pending = concat(pieces);
    for (let at = 0; at < pending.length; ) {
      let size = Math.min(CHUNK_BYTES, pending.length - at);
      if (pending.length - at - size < MIN_FRAME_BYTES) size = pending.length - at; // no short tail
      this.sendFrame(pending.subarray(at, at + size));
      at += size;
    }
    this.lastClientSend = Date.now();
    if (this.closing) {
      this.sendCarryPadded();
      this.sendJson({ type: "CloseStream" });
      this.setState("finishing");
    } else {
      this.setState("live");
    }
  }

  onAck(durable) {
    const value = Number(durable);
    if (!Number.isFinite(value) || value <= this.durable) return;
    this.durable = value;
    while (this.frames.length && this.frames[0].start + this.frames[0].data.length <= value) this.frames.shift();
    if (this.on.ack) this.on.ack(this.durable, this.produced);
  }

  onClose(event) {
    this.ready = false;
    this.ws = null;
    if (this.done) return;
    // Closed after Metadata: by our CloseStream, or the session was ended
    // elsewhere (REST /end/) and the server sealed it.
    if (this.metadata || (this.closing && event.code === 1000)) {
      this.done = true;
      clearInterval(this.timer);
      this.setState("closed");
      this.resolveFinished(this.metadata || {});
      return;
    }
    const errorCode = this.lastError ? this.lastError.code : "";
    // A full quota on the first connect is an answer; on a reconnect it is
    // usually our own slot, still held by the dropped connection's lease.
    const quotaRefusal = event.code === 4429 && this.reconnects === 0;
    // An internal close whose Error says retrying cannot help: the engine
    // refused the session for good (e.g. a language it can't do) and the
    // server has failed it; reconnecting would only loop.
    const refused = event.code === 1011 && this.lastError && this.lastError.retryable === false;
    if (FATAL_CLOSE_CODES.has(event.code) || FATAL_ERROR_CODES.has(errorCode) || quotaRefusal || refused) {
      const code = errorCode || `close_${event.code}`;
      return this.fail(new StreamError(code, this.lastError ? this.lastError.message : event.reason));
    }
    this.reconnects += 1;
    this.retryLater();
  }

  retryLater() {
    if (this.done) return;
    this.setState("reconnecting");
    if (++this.attempts > MAX_ATTEMPTS) return this.fail(new StreamError("gave_up"));
    const delay = RETRY_DELAYS_MS[Math.min(this.attempts - 1, RETRY_DELAYS_MS.length - 1)];
    setTimeout(() => this.connect(), delay);
  }

  tick() {
    if (!this.ready || this.done) return;
    const now = Date.now();
    // Acks come at least once a second while audio flows; a silent socket
    // is half-open (e.g. a dead proxy), so drop it and resume elsewhere.
    if (now - this.lastServerMessage > LIVENESS_TIMEOUT_MS && now - this.lastClientSend < LIVENESS_TIMEOUT_MS) {
      const ws = this.ws;
      this.onClose({ code: 1006, reason: "liveness" });
      if (ws) ws.close();
      return;
    }
    if (now - this.lastClientSend > KEEPALIVE_EVERY_MS) this.sendJson({ type: "KeepAlive" });
  }

  fail(error) {
    if (this.done) return;
    this.done = true;
    clearInterval(this.timer);
    if (this.ws) this.ws.close(1000);
    this.setState("failed", error);
    this.rejectFinished(error);
  }

  // All captured bytes, for tests (only when built with keepCopy).
  copiedBytes() {
    if (!this.copy) return null;
    const out = new Uint8Array(this.produced);
    let at = 0;
    for (const chunk of this.copy) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

function concat(chunks) {
  if (chunks.length === 1) return chunks[0];
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
