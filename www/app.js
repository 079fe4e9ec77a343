// rtcroom demo: a small video call page built only on the package's public API.
import { load, version, protocolVersion, webrtcSupported, RoomSession } from '/pkg/index.js';

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const NAME_KEY = 'rtcroom-demo-name';

const ERROR_TEXT = {
  'room-full': 'This room is full.',
  'unauthorized': 'The server refused to let you in.',
  'signaling-unreachable': 'Cannot reach the signaling server.',
  'signaling-closed': 'The signaling server closed the connection.',
  'invalid-argument': 'Invalid room name or settings.',
  'negotiation-failed': 'Could not set up the connection with a participant.',
  'media-error': 'A media problem occurred.',
};

const PEER_STATE_TEXT = {
  new: 'new', connecting: 'connecting…', connected: 'connected',
  reconnecting: 'reconnecting…', failed: 'failed', closed: 'closed',
};

const ui = {
  lobby: $('lobby'), call: $('call'), form: $('join-form'),
  roomInput: $('room-input'), nameInput: $('name-input'), joinButton: $('join-button'),
  grid: $('grid'), alone: $('alone'), localVideo: $('local-video'), localTile: $('local-tile'),
  micButton: $('toggle-mic'), camButton: $('toggle-cam'), leaveButton: $('leave'),
  shareLink: $('share-link'), copyStatus: $('copy-status'),
  chatLog: $('chat-log'), chatForm: $('chat-form'), chatInput: $('chat-input'), fileInput: $('file-input'),
  sessionInfo: $('session-info'), sessionState: $('session-state'), roomName: $('room-name'),
  error: $('error'), mediaNotice: $('media-notice'), reconnecting: $('reconnecting'),
};

/** The current call: { session, stream, tiles: Map<peerId, Tile>, offs: [] } or null. */
let call = null;

// ---------------------------------------------------------------------------------------------
// Messages

function showError(err) {
  if (!err) {
    ui.error.hidden = true;
    ui.error.textContent = '';
    delete ui.error.dataset.code;
    return;
  }
  const code = err.code ?? 'error';
  const friendly = ERROR_TEXT[code];
  ui.error.textContent = '';
  const strong = document.createElement('strong');
  strong.textContent = friendly ?? 'Error';
  ui.error.append(strong, ` ${err.message ?? err} `);
  const codeEl = document.createElement('code');
  codeEl.textContent = code;
  ui.error.append('(', codeEl, ')');
  ui.error.dataset.code = code;
  ui.error.hidden = false;
}

function showMediaNotice(text) {
  ui.mediaNotice.textContent = text ?? '';
  ui.mediaNotice.hidden = !text;
}

// ---------------------------------------------------------------------------------------------
// Local media

function describeMediaError(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera and microphone access was denied. You joined without sending media; allow access in the browser and rejoin to send video.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found. You joined without sending media.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera or microphone is in use by another application. You joined without sending media.';
    case 'TypeError':
      if (!navigator.mediaDevices) return 'Camera and microphone need a secure context (https or localhost). You joined without sending media.';
      break;
    default:
  }
  return `Could not open the camera or microphone (${err?.name ?? 'error'}: ${err?.message ?? err}). You joined without sending media.`;
}

/** Camera + mic, else whichever one exists; null (with a notice) when neither is available. */
async function openLocalMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    showMediaNotice(describeMediaError(new TypeError('no mediaDevices')));
    return null;
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video });
  } catch (err) {
    if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') {
      showMediaNotice(describeMediaError(err));
      return null;
    }
    // One of the two devices may be missing or busy: try each on its own.
    for (const [constraints, missing] of [[{ video }, 'microphone'], [{ audio: true }, 'camera']]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        showMediaNotice(`No usable ${missing} (${err.name}). Joined with your ${missing === 'camera' ? 'microphone' : 'camera'} only.`);
        return stream;
      } catch {
        // try the next one
      }
    }
    showMediaNotice(describeMediaError(err));
    return null;
  }
}

function updateMediaButtons() {
  const stream = call?.stream;
  const mic = stream?.getAudioTracks()[0];
  const cam = stream?.getVideoTracks()[0];
  ui.micButton.disabled = !mic;
  ui.camButton.disabled = !cam;
  const micOff = !mic || !mic.enabled;
  const camOff = !cam || !cam.enabled;
  ui.micButton.setAttribute('aria-pressed', String(Boolean(mic) && micOff));
  ui.camButton.setAttribute('aria-pressed', String(Boolean(cam) && camOff));
  ui.micButton.textContent = !mic ? 'No mic' : micOff ? 'Unmute mic' : 'Mute mic';
  ui.camButton.textContent = !cam ? 'No camera' : camOff ? 'Camera on' : 'Camera off';
  ui.localTile.classList.toggle('no-video', camOff);
  const flags = [];
  if (!mic) flags.push('no mic'); else if (micOff) flags.push('muted');
  if (!cam) flags.push('no camera'); else if (camOff) flags.push('camera off');
  $('local-media-state').textContent = flags.join(', ');
  $('local-media-state').hidden = flags.length === 0;
}

function toggleTrack(kind) {
  const track = kind === 'audio' ? call?.stream?.getAudioTracks()[0] : call?.stream?.getVideoTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  updateMediaButtons();
}

// ---------------------------------------------------------------------------------------------
// Remote tiles

const initial = (name) => (name.trim()[0] ?? '?').toUpperCase();

function displayName(peer, metadata = peer.metadata) {
  const name = typeof metadata?.name === 'string' ? metadata.name.trim() : '';
  return name || `Guest ${peer.id.slice(0, 6)}`;
}

/** Plays `video`; if the browser blocks sound without a click, plays muted and offers unmute. */
function play(video, tile) {
  const attempt = video.play();
  if (!attempt) return;
  attempt.catch((err) => {
    if (err?.name !== 'NotAllowedError' || video.muted) return;
    video.muted = true;
    video.play().catch(() => {});
    tile?.querySelector('.unmute')?.removeAttribute('hidden');
  });
}

class Tile {
  constructor(peer) {
    this.peer = peer;
    this.videos = new Map(); // stream id → <video>
    this.el = $('peer-tile').content.firstElementChild.cloneNode(true);
    this.el.dataset.peerId = peer.id;
    this.el.querySelector('.unmute').addEventListener('click', (event) => {
      for (const video of this.videos.values()) {
        video.muted = false;
        play(video, this.el);
      }
      event.currentTarget.hidden = true;
    });
    this.el.querySelector('.restart').addEventListener('click', () => peer.restartIce());
    this.setName(displayName(peer));
    this.setState(peer.state);
    this.offs = [
      peer.on('state-change', ({ to }) => this.setState(to)),
      peer.on('metadata-updated', ({ metadata }) => this.setName(displayName(peer, metadata))),
      peer.on('stream-added', ({ stream, role }) => this.addStream(stream, role)),
      peer.on('stream-removed', ({ stream }) => this.removeStream(stream)),
      peer.on('stats', (stats) => this.setQuality(stats)),
    ];
    for (const { stream, role } of peer.streams()) this.addStream(stream, role);
    this.updateVideoState();
  }

  setName(name) {
    this.el.querySelector('.name').textContent = name;
    this.el.querySelector('.avatar').textContent = initial(name);
    this.el.setAttribute('aria-label', `${name} (${this.el.dataset.state})`);
    this.el.dataset.name = name;
  }

  setState(state) {
    this.el.dataset.state = state;
    const badge = this.el.querySelector('.state');
    badge.dataset.state = state;
    badge.textContent = PEER_STATE_TEXT[state] ?? state;
    this.el.querySelector('.restart').hidden = state !== 'failed';
    this.el.setAttribute('aria-label', `${this.el.dataset.name ?? ''} (${state})`);
  }

  /** One line a user can read: path, round trip, received video and total receive rate. */
  setQuality(s) {
    const el = this.el.querySelector('.quality');
    const kbps = ((s.audio.inboundBitrateBps ?? 0) + (s.video.inboundBitrateBps ?? 0)) / 1000;
    const parts = [
      s.remoteCandidateType === 'relay' || s.localCandidateType === 'relay' ? 'relayed' : 'direct',
      s.rttMs != null ? `${Math.round(s.rttMs)} ms` : null,
      s.video.inboundFps != null ? `${Math.round(s.video.inboundFps)} fps` : null,
      kbps > 0 ? `${Math.round(kbps)} kbps` : null,
    ];
    el.textContent = parts.filter(Boolean).join(' · ');
    el.title = 'connection path · round trip · received frame rate · received bitrate';
    el.hidden = false;
  }

  addStream(stream, role) {
    if (this.videos.has(stream.id)) return;
    const video = document.createElement('video');
    video.setAttribute('playsinline', ''); // an attribute: Firefox has no playsInline property
    video.autoplay = true;
    video.dataset.role = role;
    video.dataset.streamId = stream.id;
    video.srcObject = stream;
    const update = () => this.updateVideoState();
    stream.addEventListener('addtrack', update);
    stream.addEventListener('removetrack', update);
    video.addEventListener('loadedmetadata', update);
    // A screen share goes first (it is the bigger picture); cameras after.
    const box = this.el.querySelector('.videos');
    if (role === 'screen') box.prepend(video); else box.append(video);
    this.videos.set(stream.id, video);
    play(video, this.el);
    this.updateVideoState();
  }

  removeStream(stream) {
    const video = this.videos.get(stream.id);
    if (!video) return;
    this.videos.delete(stream.id);
    video.pause();
    video.srcObject = null;
    video.remove();
    this.updateVideoState();
  }

  updateVideoState() {
    const withVideo = [...this.videos.values()].filter((v) => v.srcObject?.getVideoTracks().length > 0);
    for (const video of this.videos.values()) video.hidden = !withVideo.includes(video);
    this.el.classList.toggle('no-video', withVideo.length === 0);
    this.el.dataset.videos = String(withVideo.length);
  }

  destroy() {
    for (const off of this.offs) off();
    for (const video of this.videos.values()) {
      video.pause();
      video.srcObject = null;
    }
    this.videos.clear();
    this.el.remove();
  }
}

function updateAlone() {
  ui.alone.hidden = !call || call.tiles.size > 0;
  ui.grid.dataset.count = String((call?.tiles.size ?? 0) + 1);
}

// ---------------------------------------------------------------------------------------------
// Session

function setSessionState(state) {
  ui.sessionState.textContent = state;
  ui.sessionState.dataset.state = state;
  document.body.dataset.sessionState = state;
  ui.reconnecting.hidden = state !== 'reconnecting';
}

function shareUrl(room) {
  const url = new URL(location.href);
  url.search = '';
  url.hash = '';
  url.searchParams.set('room', room);
  return url.href;
}

function showLobby() {
  ui.call.hidden = true;
  ui.lobby.hidden = false;
  ui.sessionInfo.hidden = true;
  ui.joinButton.disabled = !webrtcReady;
  ui.joinButton.textContent = 'Join';
  document.title = 'rtcroom demo';
}

function showCall(room) {
  ui.lobby.hidden = true;
  ui.call.hidden = false;
  ui.sessionInfo.hidden = false;
  ui.roomName.textContent = room;
  ui.shareLink.value = shareUrl(room);
  ui.copyStatus.textContent = '';
  document.title = `${room} · rtcroom demo`;
}

/** Tears the call down (idempotent) and returns to the join form. */
async function endCall({ keepMessages = false } = {}) {
  const current = call;
  if (!current) return;
  call = null;
  for (const off of current.offs) off();
  for (const tile of current.tiles.values()) tile.destroy();
  current.tiles.clear();
  ui.chatLog.replaceChildren();
  try {
    await current.session.leave({ stopTracks: true });
  } catch (err) {
    console.warn('leave failed', err);
  }
  // Tracks are normally stopped by leave(); this covers a session that never got them.
  for (const track of current.stream?.getTracks() ?? []) track.stop();
  ui.localVideo.srcObject = null;
  if (!keepMessages) {
    showError(null);
    showMediaNotice(null);
  }
  ui.reconnecting.hidden = true;
  history.replaceState(null, '', location.pathname);
  updateAlone();
  updateMediaButtons();
  showLobby();
  ui.roomInput.value = current.session.room;
  setSessionState(current.session.state);
}

// ---------------------------------------------------------------------------------------------
// Chat: room-wide messages on the reliable channel, with delivery ticks from the acks.

function chatLine(who, text) {
  const li = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'who';
  name.textContent = who;
  li.append(name, document.createTextNode(text));
  ui.chatLog.append(li);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  return li;
}

async function sendChat(session, text) {
  const li = chatLine('You', text);
  const ticks = document.createElement('span');
  ticks.className = 'ticks';
  ticks.dataset.state = 'sending';
  ticks.textContent = '…';
  ticks.title = 'sending';
  li.append(ticks);
  if (session.peers().length === 0) {
    ticks.textContent = '✓';
    ticks.title = 'nobody else is here yet';
    return;
  }
  const { delivered, failed } = await session.broadcast({ type: 'chat', text });
  // ✓✓: every peer's app has it (the SDK's acks); ✗: who did not get it, and why.
  ticks.dataset.state = failed.length ? 'failed' : 'delivered';
  ticks.textContent = failed.length ? `✓ ${delivered.length}, ✗ ${failed.length}` : '✓✓';
  ticks.title = failed.length
    ? `not delivered to ${failed.map((f) => `${f.peerId} (${f.error.code})`).join(', ')}`
    : `delivered to ${delivered.length} peer(s)`;
}

// ---------------------------------------------------------------------------------------------
// Files: offered to every peer, accepted by the receiver, progress on both sides, a download link.

function size(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

/** A chat line for a transfer: progress bar, cancel, then the outcome. */
function fileLine(who, text, transfer) {
  const li = chatLine(who, text);
  const bar = document.createElement('progress');
  bar.max = Math.max(1, transfer.size);
  bar.value = 0;
  const actions = document.createElement('span');
  actions.className = 'file-actions';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'secondary';
  cancel.textContent = 'Cancel';
  cancel.onclick = () => transfer.cancel('cancelled in the demo');
  actions.append(cancel);
  li.append(bar, actions);
  transfer.on('progress', ({ bytes }) => { bar.value = bytes; });
  const settle = (node) => { bar.remove(); actions.replaceChildren(node); };
  return { li, settle };
}

function sendFiles(session, file) {
  for (const peer of session.peers()) {
    const transfer = peer.sendFile(file);
    const { settle } = fileLine('You', `→ ${displayName(peer)}: ${file.name} (${size(file.size)})`, transfer);
    transfer.done.then(
      () => settle(document.createTextNode(' ✓ delivered, SHA-256 verified')),
      (err) => settle(document.createTextNode(` ✗ ${err.code}`)),
    );
  }
}

function offerLine(peer, incoming) {
  const li = chatLine(displayName(peer), `offers ${incoming.name} (${size(incoming.size)})`);
  const actions = document.createElement('span');
  actions.className = 'file-actions';
  const accept = document.createElement('button');
  accept.type = 'button';
  accept.textContent = 'Accept';
  const reject = document.createElement('button');
  reject.type = 'button';
  reject.className = 'secondary';
  reject.textContent = 'Reject';
  actions.append(accept, reject);
  li.append(actions);
  reject.onclick = () => { incoming.reject('declined'); actions.replaceChildren(document.createTextNode(' declined')); };
  accept.onclick = () => {
    li.remove();
    const transfer = incoming.accept();
    const { settle } = fileLine(displayName(peer), `→ you: ${incoming.name} (${size(incoming.size)})`, transfer);
    transfer.done.then(({ blob }) => {
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = incoming.name;
      link.textContent = ' Download';
      settle(link);
    }, (err) => settle(document.createTextNode(` ✗ ${err.code}`)));
  };
}

async function joinRoom(room, name) {
  if (call) return;
  showError(null);
  showMediaNotice(null);
  ui.joinButton.disabled = true;
  ui.joinButton.textContent = 'Joining…';

  // The server that serves this page also collects stats dumps (rtcstats format) at /rtcstats.
  const stats = { url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/rtcstats` };
  const session = new RoomSession({ room, metadata: name ? { name } : {}, stats });
  call = { session, stream: null, tiles: new Map(), offs: [] };
  const current = call;
  showCall(room);
  setSessionState('connecting');
  $('local-name').textContent = name ? `${name} (you)` : 'You';
  $('local-avatar').textContent = initial(name || 'You');
  updateAlone();

  current.offs.push(
    session.on('state-change', ({ to }) => {
      setSessionState(to);
      if ((to === 'failed' || to === 'left') && call === current) endCall({ keepMessages: true });
    }),
    session.on('error', (err) => showError(err)),
    session.on('peer-joined', ({ peer }) => {
      if (current.tiles.has(peer.id)) return;
      const tile = new Tile(peer);
      current.tiles.set(peer.id, tile);
      peer.on('file', (incoming) => offerLine(peer, incoming));
      ui.grid.append(tile.el);
      updateAlone();
    }),
    session.on('message', ({ peer, data, channel }) => {
      if (channel !== 'reliable' || data?.type !== 'chat' || typeof data.text !== 'string') return;
      chatLine(displayName(peer), data.text.slice(0, 2000));
    }),
    session.on('peer-left', ({ peer }) => {
      current.tiles.get(peer.id)?.destroy();
      current.tiles.delete(peer.id);
      updateAlone();
    }),
  );

  const stream = await openLocalMedia();
  if (call !== current) { // left while the camera prompt was open
    for (const track of stream?.getTracks() ?? []) track.stop();
    return;
  }
  current.stream = stream;
  if (stream) {
    ui.localVideo.srcObject = stream;
    play(ui.localVideo);
    session.addStream(stream, { role: 'camera' });
  }
  updateMediaButtons();

  try {
    await session.join();
    if (call === current) history.replaceState(null, '', shareUrl(room));
  } catch (err) {
    showError(err);
    if (call === current) await endCall({ keepMessages: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

let webrtcReady = false;

function validateRoom() {
  const room = ui.roomInput.value.trim();
  const ok = ROOM_RE.test(room);
  ui.roomInput.setAttribute('aria-invalid', String(!ok && room !== ''));
  return ok ? room : null;
}

function randomRoom() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return `room-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const room = validateRoom();
  if (!room) {
    showError({ code: 'invalid-argument', message: 'Room names are 1–64 letters, digits, "-", "_" or ".".' });
    ui.roomInput.focus();
    return;
  }
  const name = ui.nameInput.value.trim();
  try { localStorage.setItem(NAME_KEY, name); } catch { /* storage may be disabled */ }
  joinRoom(room, name);
});
ui.roomInput.addEventListener('input', validateRoom);
$('random-room').addEventListener('click', () => {
  ui.roomInput.value = randomRoom();
  validateRoom();
  ui.roomInput.focus();
});
ui.micButton.addEventListener('click', () => toggleTrack('audio'));
ui.camButton.addEventListener('click', () => toggleTrack('video'));
ui.leaveButton.addEventListener('click', () => endCall());
ui.fileInput.addEventListener('change', () => {
  const file = ui.fileInput.files?.[0];
  ui.fileInput.value = '';
  if (file && call) sendFiles(call.session, file);
});
ui.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || !call) return;
  ui.chatInput.value = '';
  sendChat(call.session, text).catch((err) => showError(err));
});
$('copy-link').addEventListener('click', async () => {
  const text = ui.shareLink.value;
  try {
    await navigator.clipboard.writeText(text);
    ui.copyStatus.textContent = 'Copied!';
  } catch {
    ui.shareLink.select(); // clipboard API unavailable: leave it selected for Ctrl+C
    ui.copyStatus.textContent = 'Press Ctrl+C to copy';
  }
  setTimeout(() => { ui.copyStatus.textContent = ''; }, 2500);
});

async function main() {
  try {
    ui.nameInput.value = localStorage.getItem(NAME_KEY) ?? '';
  } catch { /* storage may be disabled */ }
  const params = new URLSearchParams(location.search);
  const wanted = params.get('room')?.trim() ?? '';
  if (wanted) ui.roomInput.value = wanted;

  try {
    await load();
    $('version').textContent = version();
    $('protocol').textContent = String(protocolVersion());
    webrtcReady = webrtcSupported();
    $('webrtc').textContent = webrtcReady ? 'available' : 'not available (needs RTCPeerConnection and a secure context)';
    $('webrtc').className = webrtcReady ? 'ok' : 'bad';
    $('status').textContent = 'SDK loaded.';
  } catch (err) {
    $('status').textContent = `Could not load the SDK: ${err}`;
    $('status').className = 'bad';
    return;
  }
  ui.joinButton.disabled = !webrtcReady;
  document.body.dataset.ready = 'true';
  if (!webrtcReady) {
    showError({ code: 'unsupported', message: 'This browser cannot make WebRTC calls here (it needs RTCPeerConnection and a secure context: https or localhost).' });
    return;
  }
  if (wanted) {
    if (ROOM_RE.test(wanted)) joinRoom(wanted, ui.nameInput.value.trim());
    else {
      validateRoom();
      showError({ code: 'invalid-argument', message: `"${wanted}" is not a valid room name: use 1–64 letters, digits, "-", "_" or ".".` });
    }
  } else {
    ui.roomInput.focus();
  }
}

setSessionState('idle');
updateMediaButtons();
main();
