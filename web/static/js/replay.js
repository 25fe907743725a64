// The replay page (/replay/{recording_id}): the composite or any room's own recording in
// one <video controls>, chapters, the thumbnail strip and timed comments.
//
// One clock: the lesson clock (seconds since the recording started). The composite starts
// at lesson time 0; a room's own file starts when that room's first frame arrived, its
// `offset` on the lesson clock. Chapters, comments and the strip are all placed on the
// lesson clock, so switching the picture keeps the moment, and every seek goes through
// ReplayPlayer.seekLesson().
//
// Tests read `window.tongbuReplay`.

import {
  apiGet,
  currentUser,
  errorText,
  fileJson,
  formatClock,
  formatDate,
  imageSrc,
  loadCatalogue,
  pageLang,
  schoolsLine,
} from './api.js';

const COMPOSITE = 'composite';

// ------------------------------------------------------------------ the entry (pure)

export function filesOf(entry, role, mimePrefix = '') {
  return (entry.files ?? []).filter((f) => f.role === role && f.mime.startsWith(mimePrefix));
}

/**
 * Where a room's file starts on the lesson clock. The API may carry `offset_s` per file;
 * until it does, a room that stayed to the end started `duration - its duration` in (a room
 * that left early would be placed too late by as much as it missed: a known limitation).
 */
export function roomOffset(entry, file) {
  if (typeof file.offset_s === 'number') return file.offset_s;
  if (typeof file.duration_s !== 'number' || !entry.duration_s) return 0;
  return Math.max(0, entry.duration_s - file.duration_s);
}

/**
 * What each classroom is called: {classroomId: {role, name, school, position}}.
 * Sources, best first: per-file fields if the API sends them, the lesson's roster (needs a
 * token that may read the lesson), then the chapters: "听课教室N …" with a classroom_id names
 * receiving room N, whose school is receiving_schools[N-1]; when only one room is left
 * unnamed and every receiving school is placed, it is the main room.
 */
export function roomLabels(entry, chapters = [], roster = null) {
  const labels = new Map();
  const rooms = filesOf(entry, 'room_video').map((f) => f.classroom_id);
  for (const file of filesOf(entry, 'room_video')) {
    if (file.room_role || file.school_name) {
      labels.set(file.classroom_id, {
        role: file.room_role ?? null,
        name: file.classroom_name ?? null,
        school: file.school_name ?? null,
        position: file.position ?? null,
      });
    }
  }
  for (const room of roster ?? []) {
    if (!labels.has(room.classroom_id)) {
      labels.set(room.classroom_id, {
        role: room.role,
        name: room.name,
        school: room.school_name,
        position: room.role === 'main' ? 0 : room.position,
      });
    }
  }
  const receiving = entry.receiving_schools ?? [];
  for (const chapter of chapters) {
    const match = /^听课教室\s*(\d+)/.exec(chapter.title ?? '');
    if (!match || chapter.classroom_id == null || labels.has(chapter.classroom_id)) continue;
    const position = Number(match[1]);
    labels.set(chapter.classroom_id, {
      role: 'receiving',
      name: null,
      school: receiving[position - 1]?.name ?? null,
      position,
    });
  }
  const unnamed = rooms.filter((id) => !labels.has(id));
  const placed = [...labels.values()].filter((l) => l.role === 'receiving').length;
  if (unnamed.length === 1 && placed === receiving.length && ![...labels.values()].some((l) => l.role === 'main')) {
    labels.set(unnamed[0], { role: 'main', name: null, school: entry.main_school || null, position: 0 });
  }
  return labels;
}

/** The pictures one can switch between: the composite, then each room's own video. */
export function videoSources(entry, labels) {
  const sources = [];
  const composite = filesOf(entry, 'composite')[0];
  if (composite) sources.push({ id: COMPOSITE, kind: COMPOSITE, url: composite.url, offset: 0, classroomId: null });
  const rooms = filesOf(entry, 'room_video')
    .map((file) => ({ file, label: labels.get(file.classroom_id) ?? null }))
    .sort((a, b) => (a.label?.position ?? 99) - (b.label?.position ?? 99) || a.file.classroom_id - b.file.classroom_id);
  for (const { file, label } of rooms) {
    sources.push({
      id: `room-${file.classroom_id}`,
      kind: 'room',
      url: file.url,
      offset: roomOffset(entry, file),
      classroomId: file.classroom_id,
      label,
    });
  }
  return sources;
}

export function sourceName(source, t) {
  if (source.kind === COMPOSITE) return t('replay.source.composite');
  const label = source.label;
  let room;
  if (label?.role === 'main') room = t('replay.room.main');
  else if (label?.position) room = t('replay.room.receiving', { position: label.position });
  else room = t('replay.room.unknown', { id: source.classroomId });
  if (label?.name && label.role !== 'main' && !label.position) room = label.name;
  return label?.school ? `${room} · ${label.school}` : room;
}

// ------------------------------------------------------------------ the player

/** One <video> showing one source at a time, addressed in lesson time. */
export class ReplayPlayer extends EventTarget {
  constructor(video, sources) {
    super();
    this.video = video;
    this.sources = sources;
    this.current = null;
    this.pendingLessonTime = null; // a seek asked for before the source's metadata arrived
    video.addEventListener('loadedmetadata', () => this.#applyPending());
    for (const type of ['timeupdate', 'seeked', 'play', 'pause']) {
      video.addEventListener(type, () => this.dispatchEvent(new Event('time')));
    }
  }

  /** Seconds on the lesson clock of what is shown now. */
  get lessonTime() {
    if (this.pendingLessonTime !== null) return this.pendingLessonTime;
    return (this.current?.offset ?? 0) + (this.video.currentTime || 0);
  }

  /** Show `id` at the current lesson moment, playing if the previous one was playing. */
  switchTo(id) {
    const source = this.sources.find((s) => s.id === id);
    if (!source || source === this.current) return;
    const moment = this.current ? this.lessonTime : 0;
    const playing = this.current ? !this.video.paused && !this.video.ended : false;
    this.current = source;
    this.pendingLessonTime = moment;
    this.resume = playing;
    this.video.src = source.url;
    this.video.load();
    this.dispatchEvent(new CustomEvent('source', { detail: source }));
  }

  seekLesson(t) {
    if (this.video.readyState < HTMLMediaElement.HAVE_METADATA) {
      this.pendingLessonTime = t;
      return;
    }
    this.video.currentTime = this.#clamp(t - (this.current?.offset ?? 0));
  }

  #clamp(t) {
    const end = Number.isFinite(this.video.duration) ? Math.max(0, this.video.duration - 0.05) : t;
    return Math.min(Math.max(0, t), end);
  }

  #applyPending() {
    const moment = this.pendingLessonTime;
    this.pendingLessonTime = null;
    if (moment !== null) this.video.currentTime = this.#clamp(moment - (this.current?.offset ?? 0));
    if (this.resume) this.video.play().catch(() => {});
    this.resume = false;
  }
}

// ------------------------------------------------------------------ page

const lang = pageLang();
const recordingId = Number(window.location.pathname.match(/\/replay\/(\d+)/)?.[1]) || null;
const $ = (id) => document.getElementById(id);
let t = (key) => key;
let player = null;
let entry = null;
let chapters = [];
let thumbs = null; // {index, sprite} once loaded
let lastThumb = null;
const state = { status: 'loading', error: null };

function setStatus(status, text) {
  state.status = status;
  $('status').textContent = text;
  $('status').dataset.status = status;
}

function renderHeader() {
  $('title').textContent = entry.title;
  document.title = t('replay.page_title', { title: entry.title });
  $('meta').textContent = [
    t('library.card.teacher', { teacher: entry.teacher_name }),
    `${t(`kind.${entry.kind}`)} · ${entry.grade} ${entry.subject}`,
    schoolsLine(entry, t),
    formatDate(entry.started_at, lang),
    formatClock(entry.duration_s),
  ]
    .filter(Boolean)
    .join(' · ');
  $('back').href = `/library${lang === 'en' ? '?lang=en' : ''}`;
}

function renderSources() {
  const buttons = player.sources.map((source) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.setAttribute('role', 'radio');
    button.dataset.source = source.id;
    if (source.classroomId != null) button.dataset.classroomId = String(source.classroomId);
    button.textContent = sourceName(source, t);
    button.addEventListener('click', () => player.switchTo(source.id));
    return button;
  });
  $('sources').replaceChildren(...buttons);
  markSource();
}

function markSource() {
  for (const button of $('sources').children) {
    button.setAttribute('aria-checked', String(button.dataset.source === player.current?.id));
  }
}

function timeButton(seconds, ...content) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'moment';
  button.dataset.t = String(seconds);
  const time = document.createElement('span');
  time.className = 'moment-time';
  time.textContent = formatClock(seconds);
  button.append(time, ...content);
  button.addEventListener('click', () => player.seekLesson(seconds));
  return button;
}

function renderChapters() {
  const items = chapters.map((chapter, index) => {
    const li = document.createElement('li');
    li.dataset.index = String(index);
    const title = document.createElement('span');
    title.textContent = chapter.title;
    li.append(timeButton(chapter.t_s, title));
    return li;
  });
  $('chapters').replaceChildren(...items);
  if (!items.length) $('chapters').append(Object.assign(document.createElement('li'), { className: 'meta', textContent: t('replay.no_chapters') }));
}

function renderComments() {
  const comments = [...(entry.comments ?? [])].sort((a, b) => a.t_s - b.t_s);
  const items = comments.map((comment) => {
    const li = document.createElement('li');
    li.dataset.t = String(comment.t_s);
    const author = document.createElement('span');
    author.className = 'comment-author';
    author.textContent = comment.author_name;
    const text = document.createElement('span');
    text.className = 'comment-text';
    text.textContent = comment.text;
    li.append(timeButton(comment.t_s, author, text));
    return li;
  });
  $('comments').replaceChildren(...items);
  let note = '';
  if (!entry.reviews_visible) note = t('replay.comments_hidden');
  else if (!comments.length) note = t('replay.no_comments');
  $('comments-note').textContent = note;
}

async function loadStrip() {
  const files = filesOf(entry, 'thumbnail_strip');
  const indexFile = files.find((f) => f.mime.startsWith('application/json'));
  const spriteFile = files.find((f) => f.mime.startsWith('image/'));
  if (!indexFile || !spriteFile) return;
  const index = await fileJson(indexFile.url);
  const sprite = await imageSrc(spriteFile.url);
  const offset = Number(index.offset_s) || 0;
  thumbs = { index, sprite, offset };
  const row = $('strip-row');
  const cells = (index.thumbnails ?? []).map((thumb, i) => {
    const cell = document.createElement('button');
    cell.type = 'button';
    cell.className = 'thumb';
    cell.dataset.index = String(i);
    cell.dataset.t = String(thumb.t_s + offset);
    cell.title = formatClock(thumb.t_s + offset);
    // CSSOM, not a style attribute: allowed under style-src 'self'.
    cell.style.width = `${thumb.w}px`;
    cell.style.height = `${thumb.h}px`;
    cell.style.backgroundImage = `url("${sprite}")`;
    cell.style.backgroundPosition = `-${thumb.x}px -${thumb.y}px`;
    const label = document.createElement('span');
    label.textContent = formatClock(thumb.t_s + offset);
    cell.append(label);
    return cell;
  });
  row.replaceChildren(...cells);
  $('strip').hidden = !cells.length;
  // Scrubbing: press on the row and move; each thumbnail passed over seeks to its moment.
  let scrubbing = false;
  const seekTo = (target) => {
    const cell = target?.closest?.('.thumb');
    if (cell) player.seekLesson(Number(cell.dataset.t));
  };
  row.addEventListener('pointerdown', (e) => {
    scrubbing = true;
    seekTo(e.target);
  });
  row.addEventListener('pointermove', (e) => {
    if (scrubbing) seekTo(document.elementFromPoint(e.clientX, e.clientY));
  });
  window.addEventListener('pointerup', () => {
    scrubbing = false;
  });
  row.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') seekTo(e.target);
  });
}

/** Highlight the chapter, comment and thumbnail of the current moment. */
function markMoment() {
  const now = player.lessonTime + 0.05;
  const mark = (list, selector) => {
    let active = null;
    for (const node of list.querySelectorAll(selector)) {
      node.classList.remove('current');
      if (Number(node.dataset.t) <= now) active = node;
    }
    active?.classList.add('current');
    return active;
  };
  mark($('chapters'), '.moment');
  mark($('comments'), '.moment');
  const thumb = mark($('strip-row'), '.thumb');
  // Keep the current thumbnail in view (only when it changes, so a user can scroll the row).
  if (thumb && thumb !== lastThumb) thumb.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  lastThumb = thumb;
}

async function loadRoster() {
  // The library entry names its rooms; older servers did not, then ask the lesson itself.
  if (Array.isArray(entry.rooms) && entry.rooms.length) return entry.rooms;
  if (!(await currentUser())) return null;
  try {
    return (await apiGet(`/lessons/${entry.lesson_id}`)).rooms ?? null;
  } catch {
    return null;
  }
}

async function loadChapters() {
  const file = filesOf(entry, 'chapters', 'application/json')[0];
  if (!file) return [];
  try {
    const list = await fileJson(file.url);
    return Array.isArray(list) ? list.filter((c) => typeof c.t_s === 'number') : [];
  } catch (error) {
    console.warn('tongbu: chapters', error);
    return [];
  }
}

window.tongbuReplay = {
  lang,
  recordingId,
  get state() {
    return { ...state, source: player?.current?.id ?? null, lessonTime: player?.lessonTime ?? null };
  },
  get player() {
    return player;
  },
  get chapters() {
    return chapters;
  },
  get sources() {
    return (player?.sources ?? []).map((s) => ({ id: s.id, kind: s.kind, classroomId: s.classroomId, offset: s.offset, name: sourceName(s, t) }));
  },
  get thumbnails() {
    return thumbs;
  },
};

async function main() {
  t = await loadCatalogue(lang);
  if (!recordingId) {
    setStatus('error', t('library.error.not_found'));
    return;
  }
  try {
    entry = await apiGet(`/library/${recordingId}`);
  } catch (error) {
    setStatus('error', errorText(t, error));
    return;
  }
  renderHeader();
  const [chapterList, roster] = await Promise.all([loadChapters(), loadRoster()]);
  chapters = chapterList;
  const sources = videoSources(entry, roomLabels(entry, chapters, roster));
  player = new ReplayPlayer($('video'), sources);
  player.addEventListener('source', markSource);
  player.addEventListener('time', markMoment);
  renderSources();
  renderChapters();
  renderComments();
  const video = $('video');
  video.addEventListener('error', () => setStatus('error', t('replay.media_error', { code: video.error?.code ?? '?' })));
  video.addEventListener('playing', () => setStatus('playing', t('replay.playing', { source: sourceName(player.current, t) })));
  video.addEventListener('pause', () => setStatus('paused', t('replay.paused')));
  video.addEventListener('loadedmetadata', () => {
    if (state.status === 'loading') setStatus('ready', t('replay.ready'));
  });
  if (!sources.length) {
    setStatus('error', t(entry.state === 'processing' ? 'library.card.processing' : 'replay.no_video'));
  } else {
    player.switchTo(sources[0].id);
  }
  loadStrip().catch((error) => console.warn('tongbu: thumbnails', error));
}

main().catch((error) => {
  console.error(error);
  setStatus('error', String(error));
});
