// The replay page (/replay/{recording_id}): the composite or any room's own recording in
// one <video controls>, chapters, the thumbnail strip, timed comments drawn on a timeline,
// a form to comment at the current moment and the rating rubric (评课量表).
//
// One clock: the lesson clock (seconds since the recording started). The composite starts
// at lesson time 0; a room's own file starts when that room's first frame arrived, its
// `offset` on the lesson clock. Chapters, comments, the timeline and the strip are all
// placed on the lesson clock, so switching the picture keeps the moment, and every seek
// goes through ReplayPlayer.seekLesson(). A new comment is attached to a lesson moment too.
//
// Signed in by the session cookie (session.js): the <video> and the JSON files are
// same-origin library URLs, so the browser sends the cookie and a private recording plays
// for whoever may see it. What the page offers follows what the entry says the visitor
// may do (`can_comment`, `can_rate`, `reviews_visible`); an anonymous visitor or one
// without the right gets a sentence and a login link instead of a broken form or player.
//
// Tests read `window.tongbuReplay`.

import {
  ApiError,
  api,
  apiGet,
  currentSession,
  errorText,
  fileJson,
  formatClock,
  formatDate,
  imageSrc,
  loadCatalogue,
  pageLang,
  schoolsLine,
} from './api.js';
import { mountNav } from './nav.js';
import { loginUrl } from './session.js';

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

/** The length of the lesson clock the timeline spans: the entry's, else the video's. */
export function lessonSpan(entry, videoEnd = 0) {
  const known = Number(entry.duration_s) || 0;
  return known > 0 ? known : Math.max(0, Number(videoEnd) || 0);
}

/** Where a moment sits on the timeline, in percent of its width (0 to 100). */
export function markerPercent(t, span) {
  if (!(span > 0)) return 0;
  return Math.min(100, Math.max(0, (Number(t) / span) * 100));
}

/**
 * The moment a comment is attached to: the lesson time, within the recording (the server
 * refuses a moment past its end), to a tenth of a second.
 */
export function commentMoment(t, span) {
  const within = span > 0 ? Math.min(Math.max(0, t), span) : Math.max(0, t);
  return Math.round(within * 10) / 10;
}

/** An ISO 8601 duration for <time datetime>: 75.4 → "PT75.4S". */
export function isoDuration(seconds) {
  return `PT${Math.max(0, Math.round(Number(seconds) * 10) / 10)}S`;
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
let session = null;
let rubric = null;
let chapters = [];
let thumbs = null; // {index, sprite} once loaded
let lastThumb = null;
let commentPin = null; // the moment a comment being written is attached to; null: follow
const state = { status: 'loading', error: null };

function setStatus(status, text) {
  state.status = status;
  $('status').textContent = text;
  $('status').dataset.status = status;
}

function loginLink(id, text) {
  const link = document.createElement('a');
  link.id = id;
  link.href = loginUrl();
  link.textContent = text;
  return link;
}

/** Instead of the player: why this recording cannot be shown, and a way to sign in. */
function showAccess(status, error) {
  state.status = status;
  state.error = String(error?.message ?? error ?? status);
  $('replay').hidden = true;
  $('access').hidden = false;
  $('access').dataset.status = status;
  const link = $('access-login');
  link.hidden = true;
  if (status === 'sign_in') {
    $('access-text').textContent = t('replay.access.sign_in');
    Object.assign(link, { href: loginUrl(), textContent: t('replay.access.login'), hidden: false });
  } else if (status === 'forbidden') {
    $('access-text').textContent = t('replay.access.forbidden');
    Object.assign(link, { href: loginUrl(), textContent: t('replay.access.switch'), hidden: false });
  } else if (status === 'not_found') {
    $('access-text').textContent = t('library.error.not_found');
  } else {
    $('access-text').textContent = errorText(t, error);
  }
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
    entry.published ? '' : t('library.card.unpublished'),
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

function sortedComments() {
  return [...(entry.comments ?? [])].sort((a, b) => a.t_s - b.t_s || a.id - b.id);
}

function renderComments() {
  const comments = sortedComments();
  const items = comments.map((comment) => {
    const li = document.createElement('li');
    li.dataset.t = String(comment.t_s);
    li.dataset.commentId = String(comment.id);
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
  if (!entry.reviews_visible) note = t(session?.user ? 'replay.comments_hidden' : 'replay.comments_hidden_anonymous');
  else if (!comments.length) note = t('replay.no_comments');
  $('comments-note').textContent = note;
  renderTimeline();
  markMoment();
}

/** The bar under the video: one marker per comment at its moment; a marker seeks there. */
function renderTimeline() {
  const span = lessonSpan(entry, player ? (player.current?.offset ?? 0) + (player.video.duration || 0) : 0);
  const comments = entry.reviews_visible ? sortedComments() : [];
  const markers = comments.map((comment) => {
    const marker = document.createElement('button');
    marker.type = 'button';
    marker.className = 'timeline-marker';
    marker.dataset.t = String(comment.t_s);
    marker.dataset.commentId = String(comment.id);
    marker.style.left = `${markerPercent(comment.t_s, span)}%`; // CSSOM: allowed by the CSP
    const label = t('replay.timeline.marker', { time: formatClock(comment.t_s), author: comment.author_name, text: comment.text });
    marker.setAttribute('aria-label', label);
    marker.title = label;
    marker.addEventListener('click', () => {
      player.seekLesson(comment.t_s);
      showComment(comment.id);
    });
    return marker;
  });
  $('timeline-markers').replaceChildren(...markers);
  $('timeline-end').textContent = formatClock(span);
  $('timeline').hidden = !(span > 0) || !entry.reviews_visible;
  $('timeline').dataset.span = String(span);
}

/** Bring a comment of the list into view and mark it, as its marker was chosen. */
function showComment(id) {
  const item = $('comments').querySelector(`li[data-comment-id="${id}"]`);
  if (!item) return;
  for (const other of $('comments').querySelectorAll('li.chosen')) other.classList.remove('chosen');
  item.classList.add('chosen');
  item.scrollIntoView({ block: 'nearest' });
}

// Arrow keys move between markers (each is a button: Tab reaches it, Enter seeks).
function onTimelineKey(event) {
  if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(event.key)) return;
  const markers = [...$('timeline-markers').children];
  const index = markers.indexOf(document.activeElement);
  if (index < 0 || !markers.length) return;
  event.preventDefault();
  let next = index;
  if (event.key === 'ArrowLeft') next = Math.max(0, index - 1);
  else if (event.key === 'ArrowRight') next = Math.min(markers.length - 1, index + 1);
  else if (event.key === 'Home') next = 0;
  else next = markers.length - 1;
  markers[next].focus();
}

// ------------------------------------------------------------------ commenting

function currentCommentMoment() {
  return commentMoment(commentPin ?? player?.lessonTime ?? 0, lessonSpan(entry));
}

function showCommentMoment() {
  const moment = currentCommentMoment();
  const time = $('comment-moment');
  time.textContent = formatClock(moment);
  time.dateTime = isoDuration(moment);
  time.dataset.t = String(moment);
  time.classList.toggle('pinned', commentPin !== null);
}

function renderCommentAccess() {
  const form = $('comment-form');
  const note = $('comment-note');
  form.hidden = !entry.can_comment;
  note.hidden = entry.can_comment;
  if (entry.can_comment) {
    showCommentMoment();
    return;
  }
  if (!session?.user) {
    note.replaceChildren(loginLink('comment-login', t('replay.comment.login')), ` ${t('replay.comment.login_why')}`);
  } else {
    note.textContent = t('replay.comment.not_allowed');
  }
}

function commentError(error) {
  if (error instanceof ApiError && error.field === 't_s') return t('replay.comment.bad_moment', { duration: formatClock(entry.duration_s) });
  if (error instanceof ApiError && error.status === 403) return t('replay.comment.not_allowed');
  if (error instanceof ApiError && error.status === 401) return t('replay.comment.signed_out');
  return errorText(t, error);
}

async function submitComment(event) {
  event.preventDefault();
  const textarea = $('comment-text');
  const status = $('comment-status');
  const text = textarea.value.trim();
  if (!text) {
    status.textContent = t('replay.comment.empty');
    status.dataset.status = 'error';
    textarea.focus();
    return;
  }
  const moment = currentCommentMoment();
  $('comment-submit').disabled = true;
  status.textContent = t('replay.comment.saving');
  status.dataset.status = 'loading';
  try {
    const comment = await api.post(`/library/${recordingId}/comments`, { t_s: moment, text });
    entry.comments = [...(entry.comments ?? []), comment];
    renderComments();
    showComment(comment.id);
    textarea.value = '';
    commentPin = null;
    showCommentMoment();
    status.textContent = t('replay.comment.saved', { time: formatClock(comment.t_s) });
    status.dataset.status = 'ready';
    textarea.focus();
  } catch (error) {
    status.textContent = commentError(error);
    status.dataset.status = 'error';
    if (error instanceof ApiError && error.status === 401) {
      status.append(' ', loginLink('comment-relogin', t('replay.comment.login')));
    }
  } finally {
    $('comment-submit').disabled = false;
  }
}

function wireCommentForm() {
  const textarea = $('comment-text');
  // The moment follows the player until the reviewer starts writing: a comment belongs
  // to what was on screen when it was begun, not to wherever playback got to meanwhile.
  textarea.addEventListener('input', () => {
    if (commentPin === null && textarea.value.trim()) commentPin = player?.lessonTime ?? 0;
    if (!textarea.value.trim()) commentPin = null;
    showCommentMoment();
  });
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $('comment-form').requestSubmit();
    }
  });
  $('comment-now').addEventListener('click', () => {
    commentPin = textarea.value.trim() ? (player?.lessonTime ?? 0) : null;
    showCommentMoment();
    textarea.focus();
  });
  $('comment-form').addEventListener('submit', submitComment);
}

// ------------------------------------------------------------------ rating

function scoreText(value) {
  return value == null ? '—' : String(Math.round(value * 100) / 100);
}

function renderRatingSummary() {
  const box = $('rating-summary');
  const summary = entry.ratings;
  if (!summary) {
    box.replaceChildren();
    return;
  }
  const head = document.createElement('p');
  head.id = 'rating-count';
  head.textContent = summary.count
    ? t('replay.rating.summary', { count: summary.count, total: scoreText(summary.average_total) })
    : t('replay.rating.none');
  box.replaceChildren(head);
  if (!summary.count) return;
  const table = document.createElement('table');
  table.className = 'rating-table';
  const caption = document.createElement('caption');
  caption.textContent = t('replay.rating.averages');
  const header = document.createElement('tr');
  for (const key of ['replay.rating.criterion', 'replay.rating.weight', 'replay.rating.average']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = t(key);
    header.append(th);
  }
  const rows = summary.criteria.map((c) => {
    const row = document.createElement('tr');
    row.dataset.key = c.key;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = c.name;
    const weight = document.createElement('td');
    weight.textContent = `${scoreText(c.weight)}%`;
    const average = document.createElement('td');
    average.textContent = `${scoreText(c.average)} / ${scoreText(c.max_score)}`;
    row.append(name, weight, average);
    return row;
  });
  table.append(caption, header, ...rows);
  box.append(table);
}

function renderMyRating() {
  const mine = entry.my_rating;
  $('rating-mine').hidden = !mine;
  if (mine) {
    $('rating-mine').textContent = t('replay.rating.mine', { total: scoreText(mine.total), when: formatDate(mine.updated_at, lang) });
  }
}

function buildRatingForm() {
  const mine = entry.my_rating;
  const fields = rubric.criteria.map((c) => {
    const row = document.createElement('div');
    row.className = 'rating-row';
    const id = `score-${c.key}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = t('replay.rating.criterion_label', { name: c.name, weight: scoreText(c.weight), max: scoreText(c.max_score) });
    const input = document.createElement('input');
    Object.assign(input, { id, type: 'number', min: '0', max: String(c.max_score), step: '0.5', required: true, inputMode: 'decimal' });
    input.dataset.key = c.key;
    const saved = mine?.scores?.[c.key];
    if (saved != null) input.value = String(saved);
    row.append(label, input);
    return row;
  });
  $('rating-criteria').replaceChildren(...fields);
  $('rating-comment').value = mine?.comment ?? '';
  $('rating-form').hidden = false;
}

async function renderRating() {
  const note = $('rating-note');
  note.hidden = true;
  renderRatingSummary();
  renderMyRating();
  if (!entry.reviews_visible) {
    note.hidden = false;
    if (!session?.user) note.replaceChildren(loginLink('rating-login', t('replay.rating.login')), ` ${t('replay.rating.login_why')}`);
    else note.textContent = t('replay.rating.hidden');
  }
  if (!entry.can_rate) {
    $('rating-form').hidden = true;
    if (entry.reviews_visible) {
      note.hidden = false;
      note.textContent = t('replay.rating.not_allowed');
    }
    return;
  }
  try {
    rubric ??= await apiGet(`/library/${recordingId}/rubric`);
    buildRatingForm();
  } catch (error) {
    note.hidden = false;
    note.textContent = errorText(t, error);
  }
}

async function submitRating(event) {
  event.preventDefault();
  const form = $('rating-form');
  const status = $('rating-status');
  if (!form.reportValidity()) return; // the browser says which score is missing or out of range
  const scores = {};
  for (const input of $('rating-criteria').querySelectorAll('input[data-key]')) scores[input.dataset.key] = Number(input.value);
  $('rating-submit').disabled = true;
  status.textContent = t('replay.rating.saving');
  status.dataset.status = 'loading';
  try {
    const rating = await api.put(`/library/${recordingId}/ratings/mine`, { scores, comment: $('rating-comment').value.trim() });
    // The summary is the server's (every reviewer's ratings): ask again for it.
    entry = { ...entry, ...(await apiGet(`/library/${recordingId}`)) };
    renderComments();
    await renderRating();
    status.textContent = t('replay.rating.saved', { total: scoreText(rating.total) });
    status.dataset.status = 'ready';
  } catch (error) {
    const field = error instanceof ApiError && error.field?.startsWith('scores.') ? error.field.slice(7) : null;
    const criterion = rubric?.criteria.find((c) => c.key === field);
    status.textContent = criterion ? t('replay.rating.bad_score', { name: criterion.name, max: scoreText(criterion.max_score) }) : errorText(t, error);
    status.dataset.status = 'error';
    if (criterion) $(`score-${criterion.key}`)?.focus();
  } finally {
    $('rating-submit').disabled = false;
  }
}

// ------------------------------------------------------------------ strip and moment

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

/** Highlight the chapter, comment and thumbnail of the current moment; move the playhead. */
function markMoment() {
  if (!player) return;
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
  const span = Number($('timeline').dataset.span) || 0;
  $('timeline-played').style.width = `${markerPercent(player.lessonTime, span)}%`;
  if (commentPin === null && entry?.can_comment) showCommentMoment();
}

async function loadRoster() {
  // The library entry names its rooms; older servers did not, then ask the lesson itself.
  if (Array.isArray(entry.rooms) && entry.rooms.length) return entry.rooms;
  if (!session?.user) return null;
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
    return { ...state, source: player?.current?.id ?? null, lessonTime: player?.lessonTime ?? null, commentMoment: entry?.can_comment ? currentCommentMoment() : null };
  },
  get player() {
    return player;
  },
  get chapters() {
    return chapters;
  },
  get comments() {
    return entry ? sortedComments() : [];
  },
  get entry() {
    return entry;
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
  session = await currentSession().catch(() => null);
  await mountNav(t, { session, current: 'library' });
  if (!recordingId) {
    showAccess('not_found');
    return;
  }
  try {
    entry = await apiGet(`/library/${recordingId}`);
  } catch (error) {
    const status = { 401: 'sign_in', 403: 'forbidden', 404: 'not_found' }[error?.status] ?? 'error';
    showAccess(status, error);
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
  renderCommentAccess();
  wireCommentForm();
  $('timeline-markers').addEventListener('keydown', onTimelineKey);
  $('rating-form').addEventListener('submit', submitRating);
  await renderRating();
  const video = $('video');
  video.addEventListener('error', () => setStatus('error', t('replay.media_error', { code: video.error?.code ?? '?' })));
  video.addEventListener('playing', () => setStatus('playing', t('replay.playing', { source: sourceName(player.current, t) })));
  video.addEventListener('pause', () => setStatus('paused', t('replay.paused')));
  video.addEventListener('loadedmetadata', () => {
    if (state.status === 'loading') setStatus('ready', t('replay.ready'));
    if (!(Number(entry.duration_s) > 0)) renderTimeline(); // the span comes from the video
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
