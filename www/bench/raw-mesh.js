// The "what you'd write by hand" baseline for the join → connected benchmark: a plain-JS mesh
// client for rtcroom-server's /signal (docs/protocol.md, version 1) doing textbook perfect
// negotiation, as in the MDN / W3C WebRTC 1.0 example:
//   makingOffer / ignoreOffer / isSettingRemoteAnswerPending, polite = the smaller peer id,
//   setLocalDescription() without arguments, trickle ICE, addTrack of the local stream.
// Deliberately no fixes beyond the textbook (no held offers, no restarts, no retries): if the
// textbook stalls, the benchmark counts it as a failure.

const defaultUrl = () => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/signal`;

export class RawMesh {
  /** `stream`: sent to every peer. `peers`: Map peerId → { pc, polite, ... } (the textbook state). */
  constructor({ room, stream, url = defaultUrl(), iceServers = [] }) {
    this.room = room;
    this.stream = stream;
    this.url = url;
    this.iceServers = iceServers;
    this.peers = new Map();
    this.id = null;
    this.ws = null;
    this.errors = [];
  }

  /** Resolves once the server answered `joined`. */
  join() {
    return new Promise((resolve, reject) => {
      const ws = (this.ws = new WebSocket(this.url));
      ws.onopen = () => ws.send(JSON.stringify({ type: 'join', version: 1, room: this.room }));
      ws.onerror = () => reject(new Error('signaling socket error'));
      ws.onmessage = ({ data }) => {
        const msg = JSON.parse(data);
        switch (msg.type) {
          case 'joined':
            this.id = msg.peerId;
            for (const { id } of msg.peers) this.#peer(id);
            resolve();
            break;
          case 'peer-joined':
            this.#peer(msg.peer.id);
            break;
          case 'peer-left':
            this.peers.get(msg.peerId)?.pc.close();
            this.peers.delete(msg.peerId);
            break;
          case 'signal':
            this.#onSignal(msg.from, msg.payload).catch((err) => this.errors.push(String(err)));
            break;
          case 'room-full':
          case 'error':
            this.errors.push(JSON.stringify(msg));
            if (msg.type === 'room-full' || msg.fatal) reject(new Error(msg.code ?? msg.type));
            break;
          default:
            break;
        }
      };
    });
  }

  leave() {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'leave' }));
    this.ws?.close();
    for (const { pc } of this.peers.values()) pc.close();
    this.peers.clear();
  }

  #send(to, payload) {
    this.ws.send(JSON.stringify({ type: 'signal', to, payload }));
  }

  #peer(peerId) {
    let p = this.peers.get(peerId);
    if (p) return p;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    p = { pc, polite: this.id < peerId, makingOffer: false, ignoreOffer: false, isSettingRemoteAnswerPending: false };
    this.peers.set(peerId, p);

    pc.onicecandidate = ({ candidate }) => this.#send(peerId, { kind: 'candidate', candidate });
    pc.onnegotiationneeded = async () => {
      try {
        p.makingOffer = true;
        await pc.setLocalDescription();
        this.#send(peerId, { kind: 'description', description: pc.localDescription });
      } catch (err) {
        this.errors.push(String(err));
      } finally {
        p.makingOffer = false;
      }
    };
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    return p;
  }

  async #onSignal(from, payload) {
    const p = this.#peer(from);
    const { pc } = p;
    if (payload.kind === 'description') {
      const { description } = payload;
      const readyForOffer = !p.makingOffer && (pc.signalingState === 'stable' || p.isSettingRemoteAnswerPending);
      const offerCollision = description.type === 'offer' && !readyForOffer;
      p.ignoreOffer = !p.polite && offerCollision;
      if (p.ignoreOffer) return;
      p.isSettingRemoteAnswerPending = description.type === 'answer';
      await pc.setRemoteDescription(description); // an offer in have-local-offer rolls back implicitly
      p.isSettingRemoteAnswerPending = false;
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        this.#send(from, { kind: 'description', description: pc.localDescription });
      }
    } else if (payload.kind === 'candidate') {
      try {
        await pc.addIceCandidate(payload.candidate); // null = end of candidates
      } catch (err) {
        if (!p.ignoreOffer) throw err;
      }
    }
  }
}
