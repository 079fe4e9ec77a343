// In-page driver of the join → connected benchmark (tests/e2e/join-bench.mjs calls runRound).
// Both client kinds run in this same page against the same server:
//   'rtcroom' — RoomSession from /pkg/index.js
//   'raw'     — the hand-written textbook perfect-negotiation mesh in ./raw-mesh.js
import { load, RoomSession } from '/pkg/index.js';
import { RawMesh } from './raw-mesh.js';

let camera = null;

/** Loads the SDK's wasm and opens the fake camera + mic once, outside any measured window. */
export async function setup() {
  await load();
  camera ??= await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  return { userAgent: navigator.userAgent };
}

const kinds = {
  rtcroom: {
    create(room, stream) {
      const s = new RoomSession({ room });
      s.addStream(stream, { role: 'camera' });
      return s;
    },
    join: (s) => s.join(),
    pcs: (s) => s.peers().map((p) => p.peerConnection),
    leave: (s) => s.leave({ stopTracks: true }),
  },
  raw: {
    create: (room, stream) => new RawMesh({ room, stream }),
    join: (c) => c.join(),
    pcs: (c) => [...c.peers.values()].map((p) => p.pc),
    leave: (c) => { c.leave(); for (const t of c.stream.getTracks()) t.stop(); },
  },
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const describe = (pc) => pc
  ? `${pc.signalingState}/ice-gathering:${pc.iceGatheringState}/ice:${pc.iceConnectionState}/${pc.connectionState}`
  : 'no-pc';

/**
 * One round: `n` clients of `kind` join `room` at the same time. Returns { ok, ms } with ms from
 * the first join() call to the moment all n·(n−1) directed pairs report connectionState
 * 'connected' (polled every 5 ms), or { ok: false, reason, states } after `timeoutMs`.
 */
export async function runRound({ kind, n, room, timeoutMs = 20000 }) {
  const k = kinds[kind];
  if (!k) throw new Error(`unknown kind ${kind}`);
  const clients = [];
  for (let i = 0; i < n; i++) clients.push(k.create(room, camera.clone()));
  let joinError = null;
  const start = performance.now();
  for (const c of clients) k.join(c).catch((err) => { joinError ??= String(err?.code ?? err); });
  const allConnected = () => clients.every((c) => {
    const pcs = k.pcs(c);
    return pcs.length === n - 1 && pcs.every((pc) => pc?.connectionState === 'connected');
  });
  let result;
  for (;;) {
    if (allConnected()) {
      result = { ok: true, ms: performance.now() - start };
      break;
    }
    if (joinError || performance.now() - start > timeoutMs) {
      const states = clients.map((c) => k.pcs(c).map(describe));
      // The Chromium stall after an initial-glare rollback: the pair is stable (negotiation
      // done) but ICE never starts checking (iceConnectionState stays 'new').
      const stuckIceNew = clients.some((c) => k.pcs(c).some((pc) => pc && pc.signalingState === 'stable' && pc.iceConnectionState === 'new'));
      result = { ok: false, reason: joinError ? `join: ${joinError}` : 'timeout', stuckIceNew, states };
      break;
    }
    await sleep(5);
  }
  // What the textbook rethrows (addIceCandidate failures while not ignoring an offer, etc.).
  if (kind === 'raw') result.errors = clients.flatMap((c) => c.errors);
  await Promise.all(clients.map((c) => Promise.resolve(k.leave(c)).catch(() => {})));
  await sleep(300); // let closes settle before the next round (not measured)
  return result;
}
