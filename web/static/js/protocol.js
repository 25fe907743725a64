// Tongbu signaling protocol v1: a small browser client, free of any UI.
//
// docs/protocol.md is the reference. In short: one WebSocket at /ws/v1 carrying JSON text
// frames; the client sends `join`, the server answers `joined`, then sends `offer`s that the
// client answers (the server is always the offerer, so it picks the codec of every forwarded
// leg and there is never offer glare). Each offer carries `slots`, the meaning of every m-line
// by mid; a `slots` message later re-labels m-lines without new SDP (a room goes on stage).
//
// The watch page, the teacher console and the receiving-room page all use this module; they
// listen for events and read the public state, and never touch the socket themselves.
//
// Events (all CustomEvent, payload in `detail`):
//   status         {status, attempt?, delayMs?, error?}   see STATUS below
//   joined         {joined}          the `joined` message (lesson, you, rejoin token, ...)
//   media          {receivers}       which received track belongs to which classroom changed
//   tracks         {tracks}          the `tracks` message's list (TrackInfo)
//   lesson_state   {state}           the `lesson_state` message
//   mute_request   {kind, muted, by_classroom_id}  the main room asks this room to mute
//   lesson_ended   {reason}
//   error          {error}           an `error` message (fatal or not)
//   connection     {state}           RTCPeerConnection.connectionState
//   message        {message}         every server message, for debugging and extensions

export const PROTOCOL_VERSION = 1;
export const WS_PATH = '/ws/v1';

/** Values of `client.status`. */
export const STATUS = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting', // socket opening, `join` sent, waiting for `joined`
  JOINED: 'joined', // in the lesson; media may still be negotiating
  RECONNECTING: 'reconnecting', // waiting out a backoff delay before the next attempt
  ENDED: 'ended', // the lesson ended: nothing more will happen
  REFUSED: 'refused', // the server refused us for good (bad token, unknown lesson, ...)
  CLOSED: 'closed', // close() was called
});

// Refusals that no retry can fix. `lesson_not_open` is not here: the lesson may open soon.
// `replaced` is: another tab or box joined as this classroom, and fighting it back and
// forth would help nobody.
export const FINAL_ERRORS = new Set([
  'token_invalid',
  'token_expired',
  'token_wrong_lesson',
  'token_wrong_role',
  'token_revoked',
  'lesson_not_found',
  'lesson_ended',
  'replaced',
]);

// Refusals a fresh token from `renewToken` can fix.
const RENEWABLE_ERRORS = new Set(['token_expired', 'token_invalid']);

const JOIN_TIMEOUT_MS = 15000;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STABLE_AFTER_MS = 30000; // connected this long: the next drop starts the backoff afresh
const DEFAULT_KEEPALIVE_S = 5;

/**
 * aiortc writes `a=group:BUNDLE ` (an empty group) into an offer without m-lines, which
 * Chrome refuses ("A BUNDLE group contains a MID='' matching no m= section"). Such an offer
 * carries nothing, so dropping the line changes nothing else.
 */
export function withoutEmptyBundle(sdp) {
  if (/^m=/m.test(sdp)) return sdp;
  return sdp.replace(/^a=group:BUNDLE[ \t]*\r?\n/m, '');
}

/** The signaling URL on the page's own origin (ws: or wss: to match http: or https:). */
export function signalingUrl(location = window.location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${WS_PATH}`;
}

export class TongbuClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token        join token (watch, main or receiving role)
   * @param {number} [options.lessonId]   checked by the server against the token
   * @param {'main'|'receiving'|'watch'} [options.role]  checked likewise
   * @param {string} [options.url]        defaults to signalingUrl()
   * @param {{name?: string, version?: string}} [options.client]  reported in `join`
   * @param {{audio?: MediaStreamTrack, video?: MediaStreamTrack}} [options.publish]
   *        the room's own microphone and camera; sent on the offer's publish slots
   * @param {string} [options.preferredVideoCodec]  'h264' (default) or 'vp8', for publishing
   * @param {() => Promise<string>} [options.renewToken]  a fresh join token when the
   *        server calls ours expired or invalid (a page signed in with a session mints
   *        one; a room waiting long for its lesson to open outlives its first token)
   */
  constructor(options) {
    super();
    if (!options || !options.token) throw new TypeError('a join token is required');
    this.url = options.url || signalingUrl();
    this.token = options.token;
    this.lessonId = options.lessonId ?? null;
    this.role = options.role ?? null;
    this.clientInfo = { name: 'tongbu-web', version: '', ...(options.client || {}), kind: 'browser' };
    this.publish = options.publish || null;
    this.preferredVideoCodec = (options.preferredVideoCodec || 'h264').toLowerCase();
    this.renewToken = options.renewToken || null;

    // Public, read-only state of the current connection.
    this.status = STATUS.IDLE;
    this.joined = null; // the last `joined` message
    this.lessonState = null; // the last `lesson_state` message
    this.tracks = []; // the last `tracks` list
    this.slots = new Map(); // mid -> Slot of the current offer or `slots` message
    this.revision = 0; // revision of the offer (or slots) the slots belong to
    this.pc = null;
    this.lastError = null;
    this.connections = 0;

    this._ws = null;
    this._stopped = false;
    this._nextId = 0;
    this._queue = Promise.resolve(); // server messages are handled strictly in order
    this._wakeBackoff = null;
    this._justRenewed = false;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Connect and stay connected (reconnecting with backoff) until the lesson ends. */
  start() {
    if (this._running) return;
    this._running = true;
    this._stopped = false;
    this._run().finally(() => {
      this._running = false;
    });
  }

  /** Leave the lesson and stop reconnecting. */
  close() {
    this._stopped = true;
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._sendRaw({ type: 'leave' });
      this._ws.close(1000, 'leave');
    }
    this._teardownPc();
    if (this._wakeBackoff) this._wakeBackoff();
    this._setStatus(STATUS.CLOSED);
  }

  async _run() {
    let backoff = BACKOFF_START_MS;
    let attempt = 0;
    while (!this._stopped) {
      const started = performance.now();
      const outcome = await this._connectOnce();
      if (this._stopped) break;
      if (await this._renewed(outcome)) {
        backoff = BACKOFF_START_MS;
        continue;
      }
      if (outcome.final) {
        this._setStatus(outcome.status, { error: outcome.error });
        break;
      }
      if (performance.now() - started > STABLE_AFTER_MS) backoff = BACKOFF_START_MS;
      attempt += 1;
      // Jitter, so that every page of a school does not knock at the same instant.
      const delayMs = Math.round(backoff * (0.8 + 0.4 * Math.random()));
      this._setStatus(STATUS.RECONNECTING, { attempt, delayMs, error: outcome.error });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this._wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this._wakeBackoff = null;
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  }

  /**
   * After a refusal of our token, a fresh one from `renewToken`, once per refusal: a
   * token refused straight after renewal is final. True when there is a new token to try.
   */
  async _renewed(outcome) {
    if (!outcome.final || !RENEWABLE_ERRORS.has(outcome.error?.code)) {
      this._justRenewed = false; // anything else (a drop, a closed lesson) re-arms renewal
      return false;
    }
    if (!this.renewToken || this._justRenewed) return false;
    try {
      this.token = await this.renewToken();
    } catch (error) {
      console.warn('tongbu: could not renew the join token', error);
      return false;
    }
    this._justRenewed = true;
    return true;
  }

  /**
   * One visit: open the socket, join, serve offers until the socket closes.
   * Resolves with {final, status?, error?}; never rejects.
   */
  _connectOnce() {
    return new Promise((resolve) => {
      let outcome = { final: false, error: null };
      let joinTimer = null;
      let pingTimer = null;
      let lastHeard = performance.now();
      let ws;
      this._setStatus(STATUS.CONNECTING);
      try {
        ws = new WebSocket(this.url);
      } catch (error) {
        resolve({ final: false, error: { code: 'connect_failed', message: String(error) } });
        return;
      }
      this._ws = ws;

      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(joinTimer);
        clearInterval(pingTimer);
        this._teardownPc();
        if (this._ws === ws) this._ws = null;
        resolve(outcome);
      };

      // Keepalive: the server drops a socket silent for 3 intervals; we drop one that
      // stays silent towards us as long (a half-open link never closes by itself).
      const keepalive = (intervalS) => {
        clearInterval(pingTimer);
        const intervalMs = Math.max(1, intervalS) * 1000;
        pingTimer = setInterval(() => {
          if (performance.now() - lastHeard > 3 * intervalMs) {
            outcome.error = { code: 'link_timeout', message: 'no word from the server' };
            ws.close(4000, 'link timeout');
            finish();
            return;
          }
          this._sendRaw({ type: 'ping', t: Date.now() / 1000 });
        }, intervalMs);
      };

      ws.onopen = () => {
        const join = { type: 'join', token: this.token, client: this.clientInfo };
        if (this.lessonId != null) join.lesson_id = this.lessonId;
        if (this.role != null) join.role = this.role;
        this._sendRaw(join, 'join');
        keepalive(DEFAULT_KEEPALIVE_S);
        joinTimer = setTimeout(() => {
          outcome.error = { code: 'join_timeout', message: 'no `joined` in time' };
          ws.close(4000, 'join timeout');
          finish();
        }, JOIN_TIMEOUT_MS);
      };

      ws.onmessage = (event) => {
        lastHeard = performance.now();
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return; // the server never sends invalid JSON; ignore rather than crash
        }
        if (!message || typeof message.type !== 'string') return;
        if (message.type === 'joined') {
          clearTimeout(joinTimer);
          keepalive(message.keepalive_interval_s || DEFAULT_KEEPALIVE_S);
        } else if (message.type === 'error' && message.fatal) {
          outcome = {
            final: FINAL_ERRORS.has(message.code),
            status: message.code === 'lesson_ended' ? STATUS.ENDED : STATUS.REFUSED,
            error: message,
          };
        } else if (message.type === 'lesson_ended') {
          outcome = { final: true, status: STATUS.ENDED, error: null };
        }
        this._queue = this._queue
          .then(() => this._handle(ws, message))
          .catch((error) => {
            // A failed offer has no protocol reply; start afresh rather than wait for the
            // server's answer timeout.
            console.error('tongbu: handling', message.type, 'failed', error);
            outcome.error = { code: 'client_error', message: String(error) };
            if (ws.readyState === WebSocket.OPEN) ws.close(4001, 'client error');
          });
      };

      ws.onerror = () => {
        if (!outcome.error) outcome.error = { code: 'socket_error', message: 'WebSocket error' };
      };
      ws.onclose = (event) => {
        if (!outcome.error && !outcome.final) {
          outcome.error = { code: 'closed', message: `socket closed (${event.code})` };
        }
        finish();
      };
    });
  }

  // ------------------------------------------------------------------ messages

  async _handle(ws, message) {
    this.dispatchEvent(new CustomEvent('message', { detail: { message } }));
    switch (message.type) {
      case 'joined':
        this.joined = message;
        // The next connection, after a drop, joins with this token (it outlives the
        // original one, which may be short-lived).
        this.token = message.rejoin_token;
        this._justRenewed = false;
        this.connections += 1;
        this._setStatus(STATUS.JOINED);
        this._emit('joined', { joined: message });
        break;
      case 'offer':
        if (ws !== this._ws) return; // never answer for a socket we already left
        await this._answer(ws, message);
        break;
      case 'slots':
        this._takeSlots(message.slots, message.revision);
        this._emit('media', { receivers: this.receivers() });
        break;
      case 'tracks':
        this.tracks = message.tracks;
        this._emit('tracks', { tracks: message.tracks });
        break;
      case 'lesson_state':
        this.lessonState = message;
        this._emit('lesson_state', { state: message });
        break;
      case 'mute_request':
        this._emit('mute_request', {
          kind: message.kind,
          muted: message.muted,
          by_classroom_id: message.by_classroom_id,
        });
        break;
      case 'lesson_ended':
        this._emit('lesson_ended', { reason: message.reason });
        break;
      case 'error':
        this.lastError = message;
        this._emit('error', { error: message });
        break;
      case 'pong':
        break;
      default:
        break; // newer server, newer message: ignore what we do not know
    }
  }

  async _answer(ws, offer) {
    const pc = this._ensurePc();
    await pc.setRemoteDescription({ type: 'offer', sdp: withoutEmptyBundle(offer.sdp) });
    this._takeSlots(offer.slots, offer.revision);
    for (const transceiver of pc.getTransceivers()) {
      const slot = this.slots.get(transceiver.mid);
      if (!slot) continue;
      if (slot.direction === 'publish') {
        await this._attachPublish(transceiver, slot.kind);
      } else if (transceiver.direction !== 'recvonly') {
        transceiver.direction = 'recvonly';
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    if (ws !== this._ws) return;
    this._sendRaw({ type: 'answer', revision: offer.revision, sdp: pc.localDescription.sdp });
    // The server can only use our candidates once it holds our answer.
    this._answered = true;
    for (const candidate of this._pendingCandidates.splice(0)) this._sendRaw(candidate);
    this._emit('media', { receivers: this.receivers() });
  }

  async _attachPublish(transceiver, kind) {
    const track = this.publish && this.publish[kind];
    if (!track) {
      transceiver.direction = 'inactive';
      return;
    }
    if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
    transceiver.direction = 'sendonly';
    if (kind === 'video' && transceiver.setCodecPreferences) {
      // The server offers H.264 then VP8 on a publish slot; put ours first so the answer
      // (and what we send) uses it: recordings, HLS want H.264 (docs/ARCHITECTURE.md, decision 3).
      const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
      const mime = `video/${this.preferredVideoCodec}`;
      const first = codecs.filter(
        (c) =>
          c.mimeType.toLowerCase() === mime &&
          (mime !== 'video/h264' || /packetization-mode=1/.test(c.sdpFmtpLine || '')),
      );
      try {
        transceiver.setCodecPreferences([...first, ...codecs.filter((c) => !first.includes(c))]);
      } catch (error) {
        console.warn('tongbu: codec preferences refused', error);
      }
    }
  }

  _takeSlots(slots, revision) {
    this.slots = new Map(slots.map((slot) => [slot.mid, slot]));
    this.revision = revision;
  }

  _ensurePc() {
    if (this.pc) return this.pc;
    const iceServers = (this.joined?.ice_servers || []).map((urls) => ({ urls }));
    // Not 'max-bundle': the server's first offer to a watcher may have no m-lines (and so
    // no BUNDLE group), which Chrome refuses under max-bundle. The server always bundles
    // when it has media, and an answerer follows the offer's bundling anyway.
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    this._answered = false;
    this._pendingCandidates = [];
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      const message = c
        ? { type: 'ice', candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex }
        : { type: 'ice', candidate: null };
      if (c && !c.candidate) return; // Chrome's empty per-m-line end marker
      if (this._answered) this._sendRaw(message);
      else this._pendingCandidates.push(message);
    };
    pc.ontrack = () => this._emit('media', { receivers: this.receivers() });
    pc.onconnectionstatechange = () => {
      this._emit('connection', { state: pc.connectionState });
      // ICE gave up: the server keeps the session until the socket goes, so close it and
      // come back with a fresh peer connection.
      if (pc.connectionState === 'failed' && this._ws) this._ws.close(4002, 'ice failed');
    };
    return pc;
  }

  _teardownPc() {
    if (!this.pc) return;
    const pc = this.pc;
    this.pc = null;
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
    pc.close();
    this.slots = new Map();
    this._emit('media', { receivers: [] });
  }

  // ------------------------------------------------------------------ media

  /**
   * What the server sends us, one entry per subscribe slot:
   * {mid, kind, track, classroomId, trackId}. classroomId and trackId are null while the
   * slot is idle; the same mid (and MediaStreamTrack) may carry another room after a
   * `slots` message, so callers should re-read this on every `media` event.
   */
  receivers() {
    if (!this.pc) return [];
    const result = [];
    for (const transceiver of this.pc.getTransceivers()) {
      const slot = this.slots.get(transceiver.mid);
      if (!slot || slot.direction !== 'subscribe') continue;
      result.push({
        mid: transceiver.mid,
        kind: slot.kind,
        track: transceiver.receiver.track,
        classroomId: slot.classroom_id ?? null,
        trackId: slot.track_id ?? null,
      });
    }
    return result;
  }

  /** Per received m-line figures from getStats(): {mid: {framesDecoded, ...}}. */
  async inboundStats() {
    if (!this.pc) return {};
    const report = await this.pc.getStats();
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s);
    });
    const byMid = {};
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.mid == null) return;
      byMid[s.mid] = {
        kind: s.kind,
        codec: codecs.get(s.codecId)?.mimeType ?? null,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        framesPerSecond: s.framesPerSecond ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
        jitter: s.jitter ?? 0,
      };
    });
    return byMid;
  }

  // ------------------------------------------------------------------ requests
  // The protocol has no positive acknowledgements: a request took effect when the next
  // `lesson_state`/`tracks`/`slots` shows it; a refusal is an `error` whose `ref` is the
  // id returned here.

  /** Send a client message; returns its id. */
  send(type, fields = {}) {
    const id = `c${++this._nextId}`;
    this._sendRaw({ ...fields, type }, id);
    return id;
  }

  /** Receive only these tracks (ids from `tracks`); null returns to the role's default. */
  subscribe(trackIds) {
    return this.send('subscribe', { track_ids: trackIds });
  }

  /** Main room: put a receiving room on stage, or null to take it off. */
  stage(classroomId) {
    return this.send('stage', { classroom_id: classroomId });
  }

  raiseHand() {
    return this.send('raise_hand');
  }

  /** A receiving room lowers its own hand (no argument); the main room names the room. */
  lowerHand(classroomId = null) {
    return this.send('lower_hand', classroomId == null ? {} : { classroom_id: classroomId });
  }

  /** Main room: ask a receiving room to mute or unmute its audio or video. */
  muteRequest(classroomId, kind, muted) {
    return this.send('mute_request', { classroom_id: classroomId, kind, muted });
  }

  // ------------------------------------------------------------------ plumbing

  _sendRaw(message, id) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const frame = { v: PROTOCOL_VERSION, ...message };
    if (id) frame.id = id;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _setStatus(status, extra = {}) {
    this.status = status;
    this._emit('status', { status, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
