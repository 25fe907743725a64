// The broadcast page (/broadcast/{lesson_id}): a lesson's live HLS for anyone who may watch
// it (名校网络课堂 lessons: everyone, without signing in; other broadcast lessons: signed-in
// users, by the session cookie that same-origin requests carry).
//
// What the lesson is and where it stands comes from /live/{id}/lesson.json (recorder/
// broadcast_http.py), asked again every few seconds: before the start the page waits and
// starts playing by itself once the first segments exist; after the end it says so and
// links the replay as soon as the library publishes it. Playback is hls.js (vendored under
// /static/vendor/hls.js, nothing from the internet), or the browser's own HLS where there
// is no MSE (iPhone Safari before 17.1). A fatal player error stops the player, shows the
// trouble and tries again after a growing pause, asking lesson.json first (the lesson may
// have ended, or the session expired).
//
// Tests read `window.tongbuBroadcast`.

import Hls from '/static/vendor/hls.js/hls.light.min.mjs';
import { fileJson, formatDate, loadCatalogue, pageLang, teacherTitle } from './api.js';
import { mountNav } from './nav.js';
import { loginUrl } from './session.js';

// The ES module build of hls.js has no inline worker: it loads this one, from our own
// origin, so the CSP needs no blob: worker and transmuxing stays off the main thread.
const WORKER_PATH = '/static/vendor/hls.js/hls.worker.js';
const POLL_MS = { waiting: 5000, live: 15000, ended: 15000 };
const REPLAY_WAIT_MS = 15 * 60 * 1000; // an ended page asks for the replay this long
const ENDING_GRACE_MS = 30000; // the player may play out what it holds, at most this long
const RETRY_MS = [2000, 4000, 8000, 15000];
const MEDIA_RECOVERIES = 2; // hls.recoverMediaError() attempts before starting afresh

export const PHASE = Object.freeze({
  LOADING: 'loading',
  WAITING: 'waiting',
  LIVE: 'live',
  ENDED: 'ended',
  CANCELLED: 'cancelled',
  PRIVATE: 'private',
  FORBIDDEN: 'forbidden',
  NOT_FOUND: 'not_found',
  UNSUPPORTED: 'unsupported',
  NO_PLAYER: 'no_player',
});

/** What lesson.json says the viewer should see. */
export function phaseOf(info) {
  if (info.lesson_state === 'cancelled') return PHASE.CANCELLED;
  if (info.lesson_state === 'ended' || info.broadcast_state === 'ended') return PHASE.ENDED;
  if (info.broadcast_state === 'unsupported_codec') return PHASE.UNSUPPORTED;
  if (info.broadcast_state === 'live' || info.broadcast_state === 'stalled') return PHASE.LIVE;
  return PHASE.WAITING;
}

/** Which player this browser can use: hls.js on MSE, else its own HLS, else none. */
export function playerKind(video) {
  if (Hls.isSupported()) return 'hls.js';
  if (video.canPlayType('application/vnd.apple.mpegurl')) return 'native';
  return null;
}

/** 75 → "01:15"; 3725 → "1:02:05". */
function countdown(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

const $ = (id) => document.getElementById(id);
const video = $('video');
const lang = pageLang();
const lessonId = Number(/^\/broadcast\/(\d+)\/?$/.exec(window.location.pathname)?.[1] ?? NaN);

const state = {
  phase: PHASE.LOADING,
  info: null,
  player: null, // 'hls.js' | 'native' while one is attached
  playing: false, // the current player has shown frames (a pause does not undo it)
  needsClick: false, // the browser refused even a muted autoplay
  ending: false, // the lesson ended; the player plays out what it holds
  trouble: null, // {attempt, retryAt} while a failure is being retried
  endedAt: null,
  errors: [], // the last fatal player errors, for the curious and for tests
};
let t = (key) => key;
let hls = null;
let mediaRecoveries = 0;
let pollTimer = null;
let endingTimer = null;

// ------------------------------------------------------------------ lesson.json

async function refresh() {
  clearTimeout(pollTimer);
  pollTimer = null;
  if (!Number.isSafeInteger(lessonId) || lessonId < 1) return enter(PHASE.NOT_FOUND);
  let info;
  try {
    info = await fileJson(`/live/${lessonId}/lesson.json`);
  } catch (error) {
    if (error.status === 401) return enter(PHASE.PRIVATE);
    if (error.status === 403) return enter(PHASE.FORBIDDEN);
    if (error.status === 404) return enter(PHASE.NOT_FOUND);
    // The server or the network: a player that is playing goes on; otherwise say so.
    if (state.playing) return schedule(POLL_MS.live);
    return troubled(error);
  }
  state.info = info;
  let phase = phaseOf(info);
  if (phase === PHASE.LIVE) {
    if (!startPlayer(info.playlist_url)) phase = PHASE.NO_PLAYER;
  } else if (phase === PHASE.ENDED && state.player && state.playing) {
    beginEnding();
  } else {
    stopPlayer();
  }
  if (!state.player) state.trouble = null;
  enter(phase);
  if (phase === PHASE.WAITING || phase === PHASE.LIVE) schedule(POLL_MS[phase]);
  if (phase === PHASE.ENDED && !info.replay_url) {
    state.endedAt ??= Date.now();
    if (Date.now() - state.endedAt < REPLAY_WAIT_MS) schedule(POLL_MS.ended);
  }
}

function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refresh, ms);
}

function troubled(error) {
  const attempt = (state.trouble?.attempt ?? 0) + 1;
  const wait = RETRY_MS[Math.min(attempt - 1, RETRY_MS.length - 1)];
  state.trouble = { attempt, retryAt: Date.now() + wait, reason: String(error?.message ?? error) };
  schedule(wait);
  render();
}

function enter(phase) {
  state.phase = phase;
  if (phase !== PHASE.LIVE && phase !== PHASE.ENDED) stopPlayer();
  if ([PHASE.PRIVATE, PHASE.FORBIDDEN, PHASE.NOT_FOUND, PHASE.CANCELLED].includes(phase)) {
    state.trouble = null;
  }
  render();
}

// ------------------------------------------------------------------ the player

/** Play `url` (once); false when this browser has no way to play HLS. */
function startPlayer(url) {
  if (state.player) return true;
  const kind = playerKind(video);
  if (!kind) return false;
  video.muted = true; // browsers allow a muted autoplay; the viewer unmutes with a gesture
  state.player = kind;
  state.ending = false;
  mediaRecoveries = 0;
  if (kind === 'hls.js') {
    hls = new Hls({ enableWorker: true, workerPath: WORKER_PATH });
    hls.on(Hls.Events.ERROR, onHlsError);
    hls.on(Hls.Events.MANIFEST_PARSED, () => tryPlay());
    hls.loadSource(url);
    hls.attachMedia(video);
  } else {
    video.src = url;
    tryPlay();
  }
  return true;
}

function stopPlayer() {
  clearTimeout(endingTimer);
  endingTimer = null;
  state.ending = false;
  state.playing = false;
  if (!state.player) return;
  state.player = null;
  if (hls) {
    hls.destroy();
    hls = null;
  }
  video.removeAttribute('src');
  video.load();
}

function tryPlay() {
  const played = video.play();
  if (played?.catch) {
    played
      .then(() => {
        state.needsClick = false;
        render();
      })
      .catch((error) => {
        // NotAllowedError: no autoplay at all here (a data saver, a strict policy).
        if (error?.name === 'NotAllowedError') state.needsClick = true;
        render();
      });
  }
}

function onHlsError(_event, data) {
  if (!data.fatal) return; // hls.js retries these itself
  state.errors = [...state.errors.slice(-9), `${data.type}/${data.details}`];
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries < MEDIA_RECOVERIES) {
    mediaRecoveries += 1;
    hls.recoverMediaError();
    return;
  }
  // Network errors are fatal only after hls.js's own retries: start again from the top.
  stopPlayer();
  troubled(new Error(`${data.type}: ${data.details}`));
}

function beginEnding() {
  if (state.ending) return;
  state.ending = true;
  // The playlist now ends (EXT-X-ENDLIST): the player plays out its last seconds and the
  // video fires 'ended'. Should it never come (a gap, a stall), say so anyway.
  endingTimer = setTimeout(finishEnding, ENDING_GRACE_MS);
}

function finishEnding() {
  stopPlayer();
  render();
}

video.addEventListener('playing', () => {
  state.playing = true;
  state.needsClick = false;
  state.trouble = null;
  mediaRecoveries = 0;
  render();
});
video.addEventListener('pause', () => render());
video.addEventListener('volumechange', () => render());
video.addEventListener('ended', () => {
  state.playing = false;
  if (state.ending || state.phase === PHASE.ENDED) {
    finishEnding();
  } else {
    // The stream ended before lesson.json knew: ask now (a player is started afresh
    // should the lesson still be live).
    stopPlayer();
    refresh();
  }
});
video.addEventListener('error', () => {
  if (state.player !== 'native') return; // hls.js reports its own errors
  state.errors = [...state.errors.slice(-9), `native/${video.error?.code}`];
  stopPlayer();
  troubled(new Error(`media error ${video.error?.code}`));
});

// ------------------------------------------------------------------ controls

function toggleSound() {
  if (!state.player) return;
  video.muted = !video.muted;
  if (!video.muted && video.paused) tryPlay();
}

function togglePause() {
  if (!state.player) return;
  if (video.paused) tryPlay();
  else video.pause();
}

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen?.();
  else if (!state.player) return;
  else $('stage').requestFullscreen?.().catch(() => {});
}

$('sound').addEventListener('click', toggleSound);
$('pause').addEventListener('click', togglePause);
$('fullscreen').addEventListener('click', toggleFullscreen);
$('play-big').addEventListener('click', () => {
  video.muted = false; // a click is a gesture: sound may come with it
  tryPlay();
});
$('retry').addEventListener('click', () => {
  if (state.trouble) state.trouble.retryAt = Date.now();
  refresh();
});
document.addEventListener('keydown', (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
  const key = event.key.toLowerCase();
  if (key === 'm') toggleSound();
  else if (key === 'f') toggleFullscreen();
  else return;
  event.preventDefault();
});

// ------------------------------------------------------------------ drawing

/** Text only when it changed: render() runs every second, live regions must not chatter. */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function renderHeader(info) {
  const title = info.title || `${info.subject} · ${info.grade}`;
  setText($('title'), title);
  const pageTitle = t('broadcast.page_title', { title });
  if (document.title !== pageTitle) document.title = pageTitle;
  setText($('meta'), [info.school, teacherTitle(t, info.teacher_name), info.subject, info.grade].filter(Boolean).join(' · '));
  const kind = $('kind');
  kind.hidden = !info.kind;
  setText(kind, info.kind ? t(`kind.${info.kind}`) : '');
}

function badgeOf() {
  if (state.phase === PHASE.LIVE && state.info?.broadcast_state === 'stalled') return 'stalled';
  return state.phase;
}

/** {title, detail, link: {href, text} | null, retry} for the overlay, or null: the video. */
function noticeOf() {
  const info = state.info;
  if (state.trouble && !state.playing) {
    const seconds = Math.max(0, Math.ceil((state.trouble.retryAt - Date.now()) / 1000));
    return {
      title: t('broadcast.network.title'),
      detail: t('broadcast.network.detail', { seconds, attempt: state.trouble.attempt }),
      retry: true,
    };
  }
  switch (state.phase) {
    case PHASE.LOADING:
      return { title: t('status.loading') };
    case PHASE.WAITING: {
      const start = Date.parse(info.planned_start);
      const now = Date.now();
      return {
        title: t('broadcast.waiting.title'),
        detail: [
          t('broadcast.waiting.at', { time: formatDate(info.planned_start, lang) }),
          now < start
            ? t('broadcast.waiting.countdown', { time: countdown(start - now) })
            : t('broadcast.waiting.soon'),
        ].join('\n'),
      };
    }
    case PHASE.LIVE:
      return state.player ? null : { title: t('status.loading') };
    case PHASE.ENDED: {
      if (state.player) return null; // playing out the last seconds
      const replay = info?.replay_url;
      const pending = !replay && state.endedAt && Date.now() - state.endedAt < REPLAY_WAIT_MS;
      return {
        title: t('broadcast.ended.title'),
        detail: replay
          ? t('broadcast.ended.replay_ready')
          : pending
            ? t('broadcast.ended.replay_pending')
            : t('broadcast.ended.no_replay'),
        link: replay
          ? { href: replay + window.location.search, text: t('broadcast.ended.replay') }
          : { href: '/library' + window.location.search, text: t('broadcast.ended.library') },
      };
    }
    case PHASE.CANCELLED:
      return { title: t('broadcast.cancelled.title') };
    case PHASE.PRIVATE:
      return {
        title: t('broadcast.private.title'),
        detail: t('broadcast.private.detail'),
        link: { href: loginUrl(), text: t('broadcast.private.login') },
      };
    case PHASE.FORBIDDEN:
      return { title: t('broadcast.forbidden.title') };
    case PHASE.NOT_FOUND:
      return { title: t('broadcast.not_found.title'), detail: t('broadcast.not_found.detail') };
    case PHASE.UNSUPPORTED:
      return { title: t('broadcast.unsupported.title'), detail: t('broadcast.unsupported.detail') };
    case PHASE.NO_PLAYER:
      return { title: t('broadcast.no_player.title'), detail: t('broadcast.no_player.detail') };
    default:
      return null;
  }
}

function render() {
  if (state.info) renderHeader(state.info);
  const badge = $('badge');
  const shown = badgeOf();
  badge.dataset.state = shown;
  setText(badge, t(`broadcast.badge.${shown}`));

  const notice = noticeOf();
  $('notice').hidden = !notice;
  video.classList.toggle('is-hidden', Boolean(notice));
  if (notice) {
    setText($('notice-title'), notice.title);
    setText($('notice-detail'), notice.detail ?? '');
    const link = $('notice-link');
    link.hidden = !notice.link;
    if (notice.link) {
      if (link.getAttribute('href') !== notice.link.href) link.href = notice.link.href;
      setText(link, notice.link.text);
    }
    $('retry').hidden = !notice.retry;
  }
  const stalled = state.player && state.info?.broadcast_state === 'stalled';
  $('banner').hidden = !stalled;
  setText($('banner'), stalled ? t('broadcast.stalled') : '');
  $('play-big').hidden = !(state.player && state.needsClick && !notice);

  const active = Boolean(state.player);
  $('controls').hidden = !active; // nothing to control while nothing plays
  const sound = $('sound');
  sound.disabled = !active;
  sound.setAttribute('aria-pressed', String(active && !video.muted));
  setText(sound, t(video.muted ? 'broadcast.sound.on' : 'broadcast.sound.off'));
  const pause = $('pause');
  pause.disabled = !active;
  setText(pause, t(video.paused ? 'broadcast.play' : 'broadcast.pause'));
  $('fullscreen').disabled = !active || !document.fullscreenEnabled;

  const latency = hls?.latency;
  setText(
    $('status'),
    active && state.playing && Number.isFinite(latency) && latency > 0
      ? t('broadcast.latency', { seconds: Math.round(latency) })
      : '',
  );
}

// ------------------------------------------------------------------ start

window.tongbuBroadcast = {
  get state() {
    return {
      phase: state.phase,
      player: state.player,
      playing: state.playing,
      ending: state.ending,
      needsClick: state.needsClick,
      trouble: state.trouble ? { ...state.trouble } : null,
      errors: [...state.errors],
      muted: video.muted,
      info: state.info,
    };
  },
  refresh,
};

t = await loadCatalogue(lang);
// The shared top bar: a signed-in viewer gets their links, anyone else a sign-in link. The
// page keeps its own language link beside the badge.
await mountNav(t, { langSwitch: false });
render();
// The countdown, the retry seconds and the latency move on their own.
setInterval(render, 1000);
await refresh();
