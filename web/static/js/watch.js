// The live lesson viewer: every room of a lesson, the main room large, receiving rooms as
// tiles. All protocol work is in protocol.js; this file only draws what the client reports.
//
// A signed-in reviewer, admin or school staff member opens /watch/7 and the page mints a
// watch token with the session; a link with `#token=` (the demo's WATCH_URL, the admin
// overview's) joins with that token alone (see live_entry.js).
//
// Tests read `window.tongbuViewer` (see the end of this file) rather than scraping the DOM.

import { loadCatalogue, pageLang, teacherTitle } from './api.js';
import { entryRefusal, mintJoinToken, takeFragmentToken } from './live_entry.js';
import { mountNav } from './nav.js';
import { STATUS, TongbuClient } from './protocol.js';
import { currentSession, requireSession } from './session.js';

const lang = pageLang();
const lessonId = Number(window.location.pathname.match(/\/watch\/(\d+)/)?.[1]) || null;

const $ = (id) => document.getElementById(id);
const grid = $('grid');

// Until the catalogue arrives, keys stand for themselves.
let t = Object.assign((key) => key, { has: () => false });
let client = null;
let session = null;
let linkToken = null;
let soundOn = false;
let lastStatus = { status: STATUS.IDLE };
const tiles = new Map(); // classroom_id -> tile record (see makeTile)

// ------------------------------------------------------------------ i18n

function errorText(error) {
  if (!error) return '';
  const key = `error.${error.code}`;
  return t.has(key) ? t(key) : t('error.unknown', { code: error.code });
}

// ------------------------------------------------------------------ tiles

function makeTile(classroomId) {
  const root = document.createElement('figure');
  root.className = 'tile offline';
  root.dataset.classroomId = String(classroomId);

  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound goes through the <audio> below, so video autoplay is never blocked
  video.dataset.classroomId = String(classroomId);
  video.dataset.kind = 'video';

  const audio = document.createElement('audio');
  audio.autoplay = true;
  audio.muted = true;
  audio.dataset.classroomId = String(classroomId);
  audio.dataset.kind = 'audio';

  const placeholder = document.createElement('div');
  placeholder.className = 'placeholder';

  const caption = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'room-name';
  const school = document.createElement('span');
  school.className = 'school-name';
  const badges = document.createElement('span');
  badges.className = 'badges';
  caption.append(name, school, badges);

  root.append(video, audio, placeholder, caption);
  const tile = {
    classroomId,
    root,
    video,
    audio,
    placeholder,
    name,
    school,
    badges,
    room: null,
    videoTrack: null,
    audioTrack: null,
    frames: 0, // frames presented, counted by requestVideoFrameCallback
    width: 0,
    height: 0,
  };
  countFrames(tile);
  video.addEventListener('resize', () => {
    tile.width = video.videoWidth;
    tile.height = video.videoHeight;
  });
  return tile;
}

function countFrames(tile) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return;
  const step = (_now, meta) => {
    tile.frames += 1;
    tile.width = meta.width;
    tile.height = meta.height;
    tile.video.requestVideoFrameCallback(step);
  };
  tile.video.requestVideoFrameCallback(step);
}

function tileFor(classroomId) {
  let tile = tiles.get(classroomId);
  if (!tile) {
    tile = makeTile(classroomId);
    tiles.set(classroomId, tile);
    grid.append(tile.root);
  }
  return tile;
}

function badge(text, kind) {
  const span = document.createElement('span');
  span.className = `badge badge-${kind}`;
  span.textContent = text;
  return span;
}

function renderRooms() {
  const state = client?.lessonState;
  const rooms = state?.rooms ?? [];
  // The main room first (CSS makes it large), then receiving rooms in roster order.
  const ordered = [...rooms].sort((a, b) => (a.role === 'main' ? 0 : 1) - (b.role === 'main' ? 0 : 1));
  for (const room of ordered) {
    const tile = tileFor(room.classroom_id);
    tile.room = room;
    const onStage = state.stage_classroom_id === room.classroom_id;
    tile.root.dataset.role = room.role;
    tile.video.dataset.role = room.role;
    tile.root.classList.toggle('main', room.role === 'main');
    tile.root.classList.toggle('on-stage', onStage);
    tile.root.classList.toggle('offline', !room.connected);
    tile.root.classList.toggle('hand-raised', room.hand_raised);
    tile.name.textContent = room.name || t('tile.unnamed', { id: room.classroom_id });
    tile.school.textContent = room.school_name;
    const badges = [badge(t(`role.${room.role}`), room.role)];
    if (onStage) badges.push(badge(t('badge.stage'), 'stage'));
    if (room.hand_raised) badges.push(badge(`✋ ${t('badge.hand')}`, 'hand'));
    if (!room.connected) badges.push(badge(t('badge.offline'), 'offline'));
    if (room.audio_muted) badges.push(badge(t('badge.audio_muted'), 'muted'));
    if (room.video_muted) badges.push(badge(t('badge.video_muted'), 'muted'));
    tile.badges.replaceChildren(...badges);
    grid.append(tile.root); // re-appending keeps DOM order equal to the sorted order
  }
  const online = rooms.filter((r) => r.connected).length;
  $('presence').textContent = rooms.length ? t('presence', { online, total: rooms.length }) : '';
  if (state) {
    const pill = $('lesson-state');
    pill.hidden = false;
    pill.textContent = t(`lesson.state.${state.state}`);
    pill.dataset.state = state.state;
  }
  renderPlaceholders();
  applySound();
}

function renderMedia(receivers) {
  // Group what the server sends by source room. The same MediaStreamTrack may move from
  // one room to another after a `slots` message, so rebuild the mapping every time.
  const byRoom = new Map();
  for (const r of receivers) {
    if (r.classroomId == null || !r.track) continue;
    const entry = byRoom.get(r.classroomId) ?? {};
    entry[r.kind] = r.track;
    byRoom.set(r.classroomId, entry);
  }
  for (const classroomId of byRoom.keys()) tileFor(classroomId);
  for (const tile of tiles.values()) {
    const media = byRoom.get(tile.classroomId) ?? {};
    attach(tile, 'video', media.video ?? null);
    attach(tile, 'audio', media.audio ?? null);
  }
  renderPlaceholders();
  applySound();
}

function attach(tile, kind, track) {
  const field = kind === 'video' ? 'videoTrack' : 'audioTrack';
  if (tile[field] === track) return;
  tile[field] = track;
  const element = tile[kind];
  element.srcObject = track ? new MediaStream([track]) : null;
  tile.root.classList.toggle(`has-${kind}`, Boolean(track));
  if (track) element.play().catch(() => {}); // audio may wait for the sound button
}

function renderPlaceholders() {
  for (const tile of tiles.values()) {
    const connected = tile.room ? tile.room.connected : true;
    tile.placeholder.textContent = connected ? t('tile.waiting') : t('tile.offline');
    tile.placeholder.hidden = Boolean(tile.videoTrack) && tile.frames > 0;
  }
}

// ------------------------------------------------------------------ sound

/**
 * A watcher receives every room's sound; playing all five at once is noise. Like a
 * receiving room, we let the teacher and the room on stage be heard.
 */
function applySound() {
  const stage = client?.lessonState?.stage_classroom_id ?? null;
  for (const tile of tiles.values()) {
    const audible = soundOn && (tile.room?.role === 'main' || tile.classroomId === stage);
    tile.audio.muted = !audible;
    if (audible && tile.audioTrack) tile.audio.play().catch(() => {});
  }
  const button = $('sound');
  button.textContent = t(soundOn ? 'sound.disable' : 'sound.enable');
  button.setAttribute('aria-pressed', String(soundOn));
}

// ------------------------------------------------------------------ header and status

function renderLesson(joined) {
  const lesson = joined.lesson;
  const title = lesson.title || t('lesson.untitled', { subject: lesson.subject, grade: lesson.grade });
  $('lesson-title').textContent = title;
  document.title = t('page.title', { title });
  const time = (iso) => new Date(iso).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
  $('lesson-meta').textContent = t('lesson.meta', {
    teacher: teacherTitle(t, lesson.teacher_name),
    start: time(lesson.planned_start),
    end: time(lesson.planned_end),
  });
}

function playingCount() {
  let count = 0;
  for (const tile of tiles.values()) if (tile.videoTrack && tile.frames > 0) count += 1;
  return count;
}

function renderStatus() {
  const { status, attempt, delayMs, error } = lastStatus;
  let text;
  switch (status) {
    case STATUS.CONNECTING:
      text = t('status.connecting');
      break;
    case STATUS.JOINED: {
      const count = playingCount();
      text = count ? t('status.playing', { count }) : t('status.joined');
      break;
    }
    case STATUS.RECONNECTING:
      text = t('status.reconnecting', { seconds: Math.ceil(delayMs / 1000), attempt });
      if (error && error.code === 'lesson_not_open') text = `${errorText(error)} · ${text}`;
      break;
    case STATUS.ENDED:
      text = t('status.ended');
      break;
    case STATUS.REFUSED:
      text = t('status.refused', { reason: errorText(error) });
      break;
    case STATUS.CLOSED:
      text = t('status.closed');
      break;
    default:
      text = t('status.loading');
  }
  const node = $('status');
  node.textContent = text;
  node.dataset.status = status;
}

// ------------------------------------------------------------------ test and debug hooks

function roomSummaries() {
  const stage = client?.lessonState?.stage_classroom_id ?? null;
  return [...tiles.values()].map((tile) => ({
    classroomId: tile.classroomId,
    name: tile.room?.name ?? null,
    schoolName: tile.room?.school_name ?? null,
    role: tile.room?.role ?? null,
    connected: tile.room?.connected ?? null,
    onStage: tile.classroomId === stage,
    handRaised: tile.room?.hand_raised ?? false,
    hasVideo: Boolean(tile.videoTrack),
    hasAudio: Boolean(tile.audioTrack),
    framesPresented: tile.frames,
    width: tile.width,
    height: tile.height,
  }));
}

/** Average colour of a region (fractions of the frame) of a room's current picture. */
function sampleColour(classroomId, region = { x: 0.25, y: 0.25, w: 0.5, h: 0.5 }) {
  const tile = tiles.get(classroomId);
  const video = tile?.video;
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0);
  const x = Math.floor(region.x * canvas.width);
  const y = Math.floor(region.y * canvas.height);
  const w = Math.max(1, Math.floor(region.w * canvas.width));
  const h = Math.max(1, Math.floor(region.h * canvas.height));
  const { data } = ctx.getImageData(x, y, w, h);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) {
    sum[0] += data[i];
    sum[1] += data[i + 1];
    sum[2] += data[i + 2];
  }
  const n = data.length / 4;
  return { r: Math.round(sum[0] / n), g: Math.round(sum[1] / n), b: Math.round(sum[2] / n) };
}

window.tongbuViewer = {
  lang,
  lessonId,
  /** How the page got in: 'link' (a #token= link) or 'session'; null before it knows. */
  get entry() {
    if (linkToken) return 'link';
    return session ? 'session' : null;
  },
  get client() {
    return client;
  },
  get status() {
    return client?.status ?? STATUS.IDLE;
  },
  rooms: roomSummaries,
  sampleColour,
  /** Rooms plus per received m-line figures (framesDecoded from getStats). */
  async stats() {
    const inbound = client ? await client.inboundStats() : {};
    const tracks = (client?.receivers() ?? []).map((r) => ({
      mid: r.mid,
      kind: r.kind,
      classroomId: r.classroomId,
      trackId: r.trackId,
      ...(inbound[r.mid] ?? {}),
    }));
    return {
      status: this.status,
      stageClassroomId: client?.lessonState?.stage_classroom_id ?? null,
      rooms: roomSummaries(),
      tracks,
    };
  },
};

// ------------------------------------------------------------------ start

/** A refusal, said in the status line; the page goes no further. */
function stopWith({ status, text }) {
  const node = $('status');
  node.textContent = text;
  node.dataset.status = status;
}

async function mintWatchToken() {
  return (await mintJoinToken(lessonId, 'watch')).token;
}

async function main() {
  t = await loadCatalogue(lang);
  $('sound').addEventListener('click', () => {
    soundOn = !soundOn;
    applySound();
  });
  linkToken = takeFragmentToken('watch', lessonId);
  // A link carries its own way in; without one the page needs a signed-in user.
  session = linkToken ? await currentSession().catch(() => null) : await requireSession();
  if (!linkToken && !session) return; // on the way to the login page
  await mountNav(t, { session, beforeSignOut: () => client?.close() });
  let token = linkToken;
  if (!token) {
    try {
      token = await mintWatchToken();
    } catch (error) {
      stopWith(entryRefusal(t, error, lessonId));
      return;
    }
  }
  client = new TongbuClient({
    token,
    lessonId,
    role: 'watch',
    client: { name: 'tongbu-watch', version: '1' },
    renewToken: linkToken ? null : mintWatchToken,
  });
  client.addEventListener('status', (e) => {
    lastStatus = e.detail;
    renderStatus();
  });
  client.addEventListener('joined', (e) => renderLesson(e.detail.joined));
  client.addEventListener('lesson_state', renderRooms);
  client.addEventListener('media', (e) => renderMedia(e.detail.receivers));
  client.addEventListener('error', (e) => console.warn('tongbu:', e.detail.error.code, e.detail.error.message));
  client.start();
  // Frames arrive without events of their own: refresh the status line and placeholders.
  setInterval(() => {
    renderPlaceholders();
    renderStatus();
  }, 1000);
}

main().catch((error) => {
  console.error(error);
  $('status').textContent = String(error);
});
