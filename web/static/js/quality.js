// Link quality as a page can measure it: from its own RTCPeerConnection's getStats().
//
// The protocol's `lesson_state` and `tracks` carry no link figures (the server measures
// each room's upstream, but only the REST API's live view exposes it), so the teacher
// console and the receiving-room page rate what reaches them: per received m-line the
// bitrate, the share of packets lost and the jitter since the last sample, and the round
// trip to the server from the selected ICE candidate pair. A forwarded stream inherits the
// publisher's upstream losses (the server forwards, it does not repair beyond NACK), so
// the teacher's view of a room is a fair proxy for that room's link.

/** Levels, best first; the CSS colours `.quality-good` etc. */
export const LEVELS = Object.freeze(['good', 'fair', 'poor']);

// Thresholds a teacher would feel: ~2 % loss makes video stutter, ~8 % makes it break up;
// a round trip above ~400 ms makes a question-and-answer awkward.
const FAIR = { loss: 0.02, rttMs: 150, jitterMs: 30 };
const POOR = { loss: 0.08, rttMs: 400, jitterMs: 80 };

/** good | fair | poor from one sample (null figures are ignored). */
export function rate({ loss = null, rttMs = null, jitterMs = null, kbps = null } = {}) {
  const over = (limits) =>
    (loss != null && loss >= limits.loss) ||
    (rttMs != null && rttMs >= limits.rttMs) ||
    (jitterMs != null && jitterMs >= limits.jitterMs);
  if (over(POOR) || kbps === 0) return 'poor';
  if (over(FAIR)) return 'fair';
  return 'good';
}

/**
 * Samples a peer connection's statistics and turns counters into rates.
 * `sample(pc)` resolves to {rttMs, byMid: {mid: {kind, kbps, loss, jitterMs, framesDecoded,
 * frameWidth, frameHeight, codec}}}; the first call has no rates yet (null).
 */
export class LinkMeter {
  constructor() {
    this._previous = new Map(); // mid -> {t, bytes, received, lost}
    this._pc = null;
  }

  async sample(pc) {
    if (!pc) return { rttMs: null, byMid: {} };
    if (pc !== this._pc) {
      this._pc = pc; // a new connection (after a rejoin): counters start again
      this._previous.clear();
    }
    const report = await pc.getStats();
    const codecs = new Map();
    let rttMs = null;
    let outboundKbps = null;
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        if (s.currentRoundTripTime != null) rttMs = Math.round(s.currentRoundTripTime * 1000);
        if (s.availableOutgoingBitrate != null) outboundKbps = Math.round(s.availableOutgoingBitrate / 1000);
      }
    });
    const byMid = {};
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.mid == null) return;
      const now = s.timestamp;
      const bytes = s.bytesReceived ?? 0;
      const received = s.packetsReceived ?? 0;
      const lost = Math.max(0, s.packetsLost ?? 0);
      const before = this._previous.get(s.mid);
      this._previous.set(s.mid, { t: now, bytes, received, lost });
      let kbps = null;
      let loss = null;
      if (before && now > before.t) {
        kbps = Math.round(((bytes - before.bytes) * 8) / (now - before.t));
        const got = received - before.received;
        const missed = lost - before.lost;
        loss = got + missed > 0 ? Math.max(0, missed) / (got + missed) : null;
      }
      byMid[s.mid] = {
        kind: s.kind,
        codec: codecs.get(s.codecId) ?? null,
        kbps,
        loss,
        jitterMs: s.jitter != null ? Math.round(s.jitter * 1000) : null,
        packetsLost: lost,
        framesDecoded: s.framesDecoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
      };
    });
    return { rttMs, outboundKbps, byMid };
  }
}

/**
 * One room's figures from the m-lines that carry it: summed bitrate, worst loss and
 * jitter, the connection's RTT, and the level.
 */
export function summarise(mids, sample) {
  let kbps = null;
  let loss = null;
  let jitterMs = null;
  for (const mid of mids) {
    const m = sample.byMid[mid];
    if (!m) continue;
    if (m.kbps != null) kbps = (kbps ?? 0) + m.kbps;
    if (m.loss != null) loss = Math.max(loss ?? 0, m.loss);
    if (m.jitterMs != null) jitterMs = Math.max(jitterMs ?? 0, m.jitterMs);
  }
  const figures = { kbps, loss, jitterMs, rttMs: sample.rttMs };
  const measured = kbps != null || loss != null;
  return { ...figures, level: measured ? rate(figures) : null };
}

/** The badge's text figures, e.g. "820 kbps · 0.4% · 12 ms". */
export function describe(figures) {
  const parts = [];
  if (figures.kbps != null) parts.push(`${figures.kbps} kbps`);
  if (figures.loss != null) parts.push(`${(figures.loss * 100).toFixed(1)}%`);
  if (figures.rttMs != null) parts.push(`${figures.rttMs} ms`);
  return parts.join(' · ');
}
