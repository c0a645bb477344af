// The call: a session with the media node that hosts the conference (signaling WebSocket plus
// one RTCPeerConnection), the participants and their tracks, chat, and recovery: an ICE
// restart when the media path breaks, and a new session when signaling breaks or the node
// sends `reconnect` (the conference moved). When the node is gone for good, the pool's other
// nodes (`fallbackUrls` of `joined`) redirect the client to the node now hosting it.

import { Signaling } from './signaling.js';

/** Connection states shown to the user. */
export const State = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  FAILED: 'failed',
  ENDED: 'ended',
  LEFT: 'left',
});

const FINAL = new Set([State.FAILED, State.ENDED, State.LEFT]);
const OPEN_TIMEOUT_MS = 5000;
const DISCONNECTED_GRACE_MS = 3000;
const ICE_RESTARTS_BEFORE_RECONNECT = 2;
const MAX_REDIRECTS = 5;
const UNREACHABLE_MS = 10000;

/**
 * Camera layers to publish when the conference forwards simulcast, lowest first, for a
 * capture `width` pixels wide: the layers step down by halves to about 320 pixels, as many as
 * Chromium sends for that size (three from 960, two from 480); none below 480 (one plain
 * encoding).
 */
function simulcastLayers(width) {
  const layers = [
    { rid: 'q', maxBitrate: 150_000 },
    { rid: 'h', maxBitrate: 500_000 },
    { rid: 'f', maxBitrate: 1_500_000 },
  ];
  const count = width >= 960 ? 3 : width >= 480 ? 2 : 0;
  return layers.slice(0, count).map((layer, i) => ({ ...layer, scaleResolutionDownBy: 2 ** (count - 1 - i) }));
}

/** Receive qualities from lowest to highest, as `setQuality` names them. */
const QUALITIES = ['low', 'medium', 'high'];

/**
 * A connection's quality from the share of packets `loss` lost on the way (before repair) and
 * the round trip `rtt` in seconds: 'good', 'fair' or 'poor'.
 */
export function grade(loss, rtt) {
  if (loss < 0.02 && rtt < 0.3) return 'good';
  if (loss < 0.08 && rtt < 0.6) return 'fair';
  return 'poor';
}

/** Reads the claims of a join token (the page needs the conference and the identity). */
export function tokenClaims(token) {
  const part = String(token).split('.')[1];
  if (!part) throw new Error('the join token is not a JWT (three parts separated by dots)');
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const json = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
  if (typeof claims.conference !== 'string') throw new Error('the join token names no conference');
  return claims;
}

/** Media sections of an SDP: mid and msid track id of each. */
function sections(sdp) {
  return sdp
    .split(/\r?\n(?=m=)/)
    .slice(1)
    .map((s) => ({
      mid: /^a=mid:(\S+)/m.exec(s)?.[1],
      trackId: /^a=msid:\S+ (\S+)/m.exec(s)?.[1],
    }));
}

function unique(list) {
  return [...new Set(list.filter(Boolean))];
}

export class Call extends EventTarget {
  #options;
  #state = State.CONNECTING;
  #session = null;
  #generation = 0;
  #joinedOnce = false;
  #lastUrl;
  #fallbacks = [];
  #attempt = 0;
  #redirects = 0;
  #lostSince = 0;
  #retryTimer = null;
  /** Signaling URLs that could not be opened, with when: a redirect there waits instead. */
  #unreachable = new Map();
  #local = { microphone: null, camera: null, screen: null, stream: new MediaStream() };

  /** Participant id to {id, identity, name, tracks: Map(node track id to track info)}. */
  participants = new Map();
  /** Node track id to the received MediaStreamTrack. */
  received = new Map();
  /** This participant's id in the current session. */
  selfId = null;
  /** The active speaker's participant id. */
  speaker = null;
  /** Chat settings of the conference, null when switched off. */
  chat = null;
  micMuted = false;
  /**
   * With last-N (`lastN` set): the most camera videos the node forwards, and the participants
   * whose cameras it forwards now; null without.
   */
  lastN = null;
  forwarded = null;
  /** Why the call failed or ended, for the user. */
  reason = '';
  /** Fresh TURN credentials received from the node during the call (`iceServers`). */
  credentialRenewals = 0;

  /**
   * options: signalingUrl, token, conference, quality ('low' | 'medium' | 'high'),
   * iceTransportPolicy ('all' | 'relay'), relayOverTls (use only the `turns:` relays),
   * giveUpMs (how long to try to get back).
   */
  constructor(options) {
    super();
    this.#options = { giveUpMs: 120000, iceTransportPolicy: 'all', ...options };
    this.#lastUrl = options.signalingUrl;
  }

  get state() {
    return this.#state;
  }

  /** The signaling URL of the current session. */
  get signalingUrl() {
    return this.#session?.url ?? this.#lastUrl;
  }

  /** Local tracks to publish once joined (either may be null). */
  setLocalTracks({ microphone = null, camera = null }) {
    this.#local.microphone = microphone;
    this.#local.camera = camera;
    for (const t of [microphone, camera]) if (t) this.#local.stream.addTrack(t);
  }

  get localMicrophone() {
    return this.#local.microphone;
  }

  get localCamera() {
    return this.#local.camera;
  }

  get localScreen() {
    return this.#local.screen;
  }

  /** Joins, shown to the others as `name` (the token's identity when empty). */
  join({ name = '' } = {}) {
    this.#options.name = name.trim();
    this.#connect(this.#options.signalingUrl);
  }

  leave() {
    if (FINAL.has(this.#state)) return;
    const session = this.#session;
    this.#setState(State.LEFT, 'You left the conference.');
    session?.socket?.send('leave');
    setTimeout(() => this.#closeSession(session), 300);
    this.#stopLocal();
  }

  /** Sends a chat message; returns false when chat is not open. */
  sendChat(text) {
    const channel = this.#session?.chat;
    if (!channel || channel.readyState !== 'open') return false;
    const bytes = new TextEncoder().encode(text).length;
    if (this.chat && bytes > this.chat.maxMessageBytes) {
      this.#emit('notice', `Message too long (${bytes} bytes, at most ${this.chat.maxMessageBytes}).`);
      return false;
    }
    channel.send(text);
    return true;
  }

  setMicrophoneMuted(muted) {
    this.micMuted = muted;
    if (this.#local.microphone) this.#local.microphone.enabled = !muted;
    this.#sendMute('microphone', muted);
  }

  /** Replaces the microphone (another device). */
  async setMicrophone(track) {
    const old = this.#local.microphone;
    this.#local.microphone = track;
    if (track) track.enabled = !this.micMuted;
    await this.#replace('microphone', track);
    if (old && old !== track) old.stop();
  }

  /** Turns the camera on with `track`, or off with null (the device is released). */
  async setCamera(track) {
    const old = this.#local.camera;
    this.#local.camera = track;
    await this.#replace('camera', track);
    this.#sendMute('camera', !track);
    if (old && old !== track) old.stop();
    this.#emit('local');
  }

  /** Shares a screen from getDisplayMedia's stream. */
  startScreenShare(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    this.#local.screen = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    const s = this.#session;
    if (s?.pc) this.#add(s, 'screen', track);
    this.#emit('local');
  }

  stopScreenShare() {
    const track = this.#local.screen;
    if (!track) return;
    this.#local.screen = null;
    // The node stops publishing it and tells the others it is gone.
    const s = this.#session;
    const trackId = s?.ownTracks.get('screen');
    if (trackId) {
      s.ownTracks.delete('screen');
      s.socket.send('unpublish', { trackId });
    }
    const sender = s && this.#senderOf(s, 'screen');
    if (sender) {
      s.sources.delete(sender);
      s.pc.removeTrack(sender);
    }
    track.stop();
    this.#emit('local');
  }

  /** Inbound video as getStats reports it, one entry per received video track. */
  async inboundVideo() {
    return this.#inbound('video', (r) => ({
      framesDecoded: r.framesDecoded ?? 0,
      bytesReceived: r.bytesReceived ?? 0,
      frameWidth: r.frameWidth ?? 0,
    }));
  }

  /** Inbound audio as getStats reports it, one entry per received audio track. */
  async inboundAudio() {
    return this.#inbound('audio', (r) => ({
      packetsReceived: r.packetsReceived ?? 0,
      audioLevel: r.audioLevel ?? 0,
    }));
  }

  /** The inbound-rtp entries of `kind`, each with where it comes from and `fields(entry)`. */
  async #inbound(kind, fields) {
    const s = this.#session;
    if (!s?.pc) return [];
    const report = await s.pc.getStats();
    const out = [];
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp' || r.kind !== kind) return;
      const { trackId, info, identity } = this.#origin(s, r);
      out.push({
        trackId: trackId ?? null,
        participant: info?.participant ?? null,
        identity,
        source: info?.source ?? null,
        ...fields(r),
      });
    });
    return out;
  }

  /**
   * Video RTP counters of the peer connection as getStats reports them: what this page sends
   * (outbound-rtp: packets, retransmissions, NACKs and keyframe requests received) and what
   * it receives (inbound-rtp: packets, losses left after recovery, NACKs and keyframe
   * requests sent, freezes), one entry per stream.
   */
  async videoRtp() {
    const s = this.#session;
    if (!s?.pc) return { outbound: [], inbound: [] };
    const report = await s.pc.getStats();
    const outbound = [];
    const inbound = [];
    report.forEach((r) => {
      if (r.kind !== 'video') return;
      if (r.type === 'outbound-rtp') {
        outbound.push({
          ssrc: r.ssrc,
          rid: r.rid ?? null,
          packetsSent: r.packetsSent ?? 0,
          retransmittedPacketsSent: r.retransmittedPacketsSent ?? 0,
          bytesSent: r.bytesSent ?? 0,
          nackCount: r.nackCount ?? 0,
          pliCount: r.pliCount ?? 0,
          firCount: r.firCount ?? 0,
        });
      } else if (r.type === 'inbound-rtp') {
        const { info, identity } = this.#origin(s, r);
        inbound.push({
          identity,
          source: info?.source ?? null,
          packetsReceived: r.packetsReceived ?? 0,
          packetsLost: r.packetsLost ?? 0,
          retransmittedPacketsReceived: r.retransmittedPacketsReceived ?? 0,
          nackCount: r.nackCount ?? 0,
          pliCount: r.pliCount ?? 0,
          firCount: r.firCount ?? 0,
          framesDecoded: r.framesDecoded ?? 0,
          freezeCount: r.freezeCount ?? 0,
          totalFreezesDuration: r.totalFreezesDuration ?? 0,
          bytesReceived: r.bytesReceived ?? 0,
        });
      }
    });
    return { outbound, inbound };
  }

  /**
   * How well each remote participant reaches this page since the last call, by participant
   * id: the share of their packets lost on the way to it (before repair) and the round trip
   * to the node, graded (see `grade`).
   */
  async receptionQuality() {
    const s = this.#session;
    if (!s?.pc) return new Map();
    const report = await s.pc.getStats();
    let rtt = 0;
    report.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        rtt = report.get(r.selectedCandidatePairId)?.currentRoundTripTime ?? 0;
      }
    });
    const totals = new Map();
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const { info } = this.#origin(s, r);
      if (!info) return;
      const t = totals.get(info.participant) ?? { received: 0, lost: 0 };
      t.received += r.packetsReceived ?? 0;
      t.lost += Math.max(0, r.packetsLost ?? 0);
      totals.set(info.participant, t);
    });
    const graded = new Map();
    for (const [participant, now] of totals) {
      const before = s.receptionBase.get(participant) ?? { received: 0, lost: 0 };
      const received = now.received - before.received;
      const lost = Math.max(0, now.lost - before.lost);
      graded.set(participant, grade(lost / Math.max(1, received + lost), rtt));
    }
    s.receptionBase = totals;
    return graded;
  }

  /** The peer connection's negotiation state and transceivers, for diagnostics. */
  describePeer() {
    const s = this.#session;
    if (!s?.pc) return null;
    return {
      url: s.url,
      signalingState: s.pc.signalingState,
      connectionState: s.pc.connectionState,
      transceivers: s.pc.getTransceivers().map((t) => ({
        mid: t.mid,
        kind: t.receiver.track.kind,
        direction: t.direction,
        currentDirection: t.currentDirection,
        nodeTrack: s.remoteMids.get(t.mid) ?? null,
        source: s.sources.get(t.sender) ?? null,
        sending: t.sender.track?.id ?? null,
      })),
    };
  }

  /** The ICE candidate pair media flows over: its local and remote candidate types. */
  async mediaPath() {
    const s = this.#session;
    if (!s?.pc) return null;
    const report = await s.pc.getStats();
    let pair = null;
    report.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    return {
      state: pair.state,
      local: local?.candidateType ?? null,
      localProtocol: local?.relayProtocol ?? local?.protocol ?? null,
      localAddress: local ? `${local.address}:${local.port}` : null,
      remote: remote?.candidateType ?? null,
      roundTripTime: pair.currentRoundTripTime ?? null,
      url: s.url,
    };
  }

  // -- sessions --------------------------------------------------------------------------

  async #connect(url) {
    clearTimeout(this.#retryTimer);
    if (FINAL.has(this.#state)) return;
    const generation = ++this.#generation;
    this.#closeSession(this.#session);
    this.#session = null;
    this.#setState(this.#joinedOnce ? State.RECONNECTING : State.CONNECTING);
    let socket;
    try {
      socket = await Signaling.open(url, OPEN_TIMEOUT_MS);
    } catch (error) {
      this.#unreachable.set(url, Date.now());
      if (generation === this.#generation) this.#retry(error.message);
      return;
    }
    this.#unreachable.delete(url);
    if (generation !== this.#generation || FINAL.has(this.#state)) {
      socket.close();
      return;
    }
    const session = {
      url,
      socket,
      pc: null,
      chat: null,
      joined: false,
      simulcast: false,
      qualities: new Map(),
      receptionBase: new Map(),
      sources: new Map(),
      remoteMids: new Map(),
      ownTracks: new Map(),
      pendingCandidates: [],
      iceRestarts: 0,
      disconnectTimer: null,
      leftReason: null,
      redirected: false,
      // Negotiation steps run one after another: an offer being made, a node offer being
      // answered and candidates being added never interleave.
      queue: Promise.resolve(),
    };
    this.#session = session;
    socket.onmessage = (message) => this.#onMessage(session, message).catch((error) => {
      this.#emit('notice', `Signaling: ${error.message}`);
    });
    socket.onclose = () => this.#onSocketClosed(session);
    socket.send('join', {
      conference: this.#options.conference,
      token: this.#options.token,
      ...(this.#options.quality ? { quality: this.#options.quality } : {}),
      ...(this.#options.name ? { name: this.#options.name } : {}),
    });
  }

  #closeSession(session) {
    if (!session) return;
    clearTimeout(session.disconnectTimer);
    session.closed = true;
    session.socket?.close();
    session.pc?.close();
  }

  /** Tries again after a lost or refused session: the last node first, then the others. */
  #retry(why) {
    if (FINAL.has(this.#state)) return;
    if (!this.#lostSince) this.#lostSince = Date.now();
    if (Date.now() - this.#lostSince > this.#options.giveUpMs) {
      this.#fail(`Could not get back into the conference for ${Math.round(this.#options.giveUpMs / 1000)} s (${why}).`);
      return;
    }
    const candidates = unique([this.#lastUrl, ...this.#fallbacks, this.#options.signalingUrl]);
    const url = candidates[this.#attempt % candidates.length];
    const round = Math.floor(this.#attempt / candidates.length);
    const delay = round === 0 ? 200 : Math.min(4000, 500 * 2 ** (round - 1));
    this.#attempt += 1;
    this.#setState(this.#joinedOnce ? State.RECONNECTING : State.CONNECTING, why);
    this.#retryTimer = setTimeout(() => this.#connect(url), delay);
  }

  #fail(reason) {
    this.#setState(State.FAILED, reason);
    this.#closeSession(this.#session);
  }

  #onSocketClosed(session) {
    if (session !== this.#session || session.closed || FINAL.has(this.#state)) return;
    if (session.redirected) return;
    const reason = session.leftReason;
    if (reason && /replaced/.test(reason)) {
      this.#setState(State.LEFT, `This session was replaced: ${reason}.`);
      this.#stopLocal();
    } else if (reason && /ended/.test(reason)) {
      this.#setState(State.ENDED, 'The conference has ended.');
      this.#stopLocal();
    } else {
      this.#closeSession(session);
      this.#retry(reason ? `the node said: ${reason}` : 'the connection to the media node was lost');
    }
  }

  async #onMessage(session, m) {
    if (session !== this.#session) return;
    switch (m.type) {
      case 'joined':
        return this.#joined(session, m);
      case 'reconnect':
        session.redirected = true;
        this.#redirects += 1;
        if (this.#redirects > MAX_REDIRECTS || Date.now() - (this.#unreachable.get(m.signalingUrl) ?? 0) < UNREACHABLE_MS) {
          // Sent back to a node that just did not answer (the directory is not updated yet),
          // or bounced around: wait, then ask again.
          this.#redirects = 0;
          this.#closeSession(session);
          this.#retry(`waiting for the conference to be placed again (${m.reason})`);
        } else {
          this.#lastUrl = m.signalingUrl;
          this.#connect(m.signalingUrl);
        }
        return;
      case 'error':
        return this.#onError(session, m);
      case 'iceServers':
        return this.#renewIceServers(session, m.iceServers ?? []);
      case 'offer':
        return this.#negotiate(session, () => this.#onOffer(session, m.sdp));
      case 'answer':
        return this.#negotiate(session, () => this.#onAnswer(session, m.sdp));
      case 'candidate':
        return this.#negotiate(session, async () => {
          if (!session.pc?.remoteDescription) session.pendingCandidates.push(m.candidate);
          else await session.pc.addIceCandidate(m.candidate).catch(() => {});
        });
      case 'participantJoined':
        this.#addParticipant(m.participant);
        return this.#emit('participants');
      case 'participantLeft':
        this.participants.delete(m.participantId);
        if (this.speaker === m.participantId) this.speaker = null;
        return this.#emit('participants');
      case 'trackPublished':
        if (m.track.participant === this.selfId) {
          session.ownTracks.set(m.track.source, m.track.id);
          if (m.track.source === 'microphone' && this.micMuted) this.#sendMute('microphone', true);
        } else {
          this.participants.get(m.track.participant)?.tracks.set(m.track.id, m.track);
          this.#emit('participants');
        }
        return;
      case 'trackUnpublished':
        this.participants.get(m.participantId)?.tracks.delete(m.trackId);
        this.received.delete(m.trackId);
        return this.#emit('participants');
      case 'muted': {
        const info = this.participants.get(m.participantId)?.tracks.get(m.trackId);
        if (info) info.muted = m.muted;
        return this.#emit('participants');
      }
      case 'activeSpeaker':
        this.speaker = m.participantId ?? null;
        return this.#emit('speaker');
      case 'forwardedVideos':
        this.forwarded = new Set(m.participantIds ?? []);
        return this.#emit('participants');
      case 'publishLayers':
        return this.#sendLayers(session, m.trackId, m.layers ?? []);
      case 'left':
        session.leftReason = m.reason;
        return;
      default:
        return;
    }
  }

  #onError(session, m) {
    if (session.joined) {
      this.#emit('notice', m.message);
      return;
    }
    session.closed = true;
    session.socket.close();
    switch (m.code) {
      case 'unauthorized':
        this.#fail(`The join link was refused: ${m.message}`);
        return;
      case 'roomFull':
        this.#fail(`The conference is full: ${m.message}`);
        return;
      case 'notHere':
        if (!this.#joinedOnce && unique([this.#lastUrl, ...this.#fallbacks]).length <= 1) {
          this.#fail(`The conference is not available: ${m.message}`);
          return;
        }
        this.#retry(m.message);
        return;
      default:
        // notPlaced, nodeFull, draining, internal: another try may work.
        this.#retry(m.message);
    }
  }

  #joined(session, m) {
    session.joined = true;
    this.#joinedOnce = true;
    this.#lastUrl = session.url;
    this.#fallbacks = Array.isArray(m.fallbackUrls) ? m.fallbackUrls : [];
    this.#redirects = 0;
    this.selfId = m.participantId;
    this.chat = m.chat ?? null;
    session.simulcast = m.simulcast === true;
    this.lastN = Number.isInteger(m.lastN) ? m.lastN : null;
    this.forwarded = this.lastN === null ? null : new Set();
    session.viewing = null;
    this.participants.clear();
    this.received.clear();
    this.speaker = null;
    for (const p of m.participants ?? []) this.#addParticipant(p);
    this.#emit('participants');
    this.#startMedia(session, m.iceServers ?? []);
  }

  /**
   * Fresh TURN credentials from the node: the next ICE gathering uses them. Media through a
   * relay restarts ICE now, onto a new allocation, before the relay refuses to refresh the
   * old one with expired credentials.
   */
  async #renewIceServers(session, servers) {
    if (!session.pc) return;
    const iceServers = this.#options.relayOverTls ? onlyTls(servers) : servers;
    session.pc.setConfiguration({ ...session.pc.getConfiguration(), iceServers });
    this.credentialRenewals += 1;
    const path = await this.mediaPath();
    if (path?.local === 'relay' && session === this.#session && !session.closed) session.pc.restartIce();
  }

  #addParticipant(p) {
    this.participants.set(p.id, {
      id: p.id,
      identity: p.identity,
      name: p.name || p.identity,
      tracks: new Map((p.tracks ?? []).map((t) => [t.id, t])),
    });
  }

  /** Where inbound-rtp stats entry `r` comes from: the node's track id, its info, its sender. */
  #origin(session, r) {
    const trackId = session.remoteMids.get(r.mid);
    const info = this.#trackInfo(trackId);
    const identity = (info && this.participants.get(info.participant)?.identity) ?? null;
    return { trackId, info, identity };
  }

  #trackInfo(trackId) {
    if (!trackId) return null;
    for (const p of this.participants.values()) {
      const t = p.tracks.get(trackId);
      if (t) return t;
    }
    return null;
  }

  // -- media -----------------------------------------------------------------------------

  #startMedia(session, iceServers) {
    const pc = new RTCPeerConnection({
      iceServers: this.#options.relayOverTls ? onlyTls(iceServers) : iceServers,
      iceTransportPolicy: this.#options.iceTransportPolicy,
    });
    session.pc = pc;
    pc.onicecandidate = (e) => {
      if (e.candidate) session.socket.send('candidate', { candidate: e.candidate.toJSON() });
    };
    pc.ontrack = (e) => {
      const trackId = session.remoteMids.get(e.transceiver.mid) ?? e.track.id;
      this.received.set(trackId, e.track);
      e.track.addEventListener('unmute', () => this.#emit('participants'));
      this.#emit('participants');
    };
    pc.onnegotiationneeded = () => this.#negotiate(session, () => this.#offer(session));
    pc.onconnectionstatechange = () => this.#onMediaState(session);
    if (this.#local.microphone) this.#add(session, 'microphone', this.#local.microphone);
    if (this.#local.camera) this.#add(session, 'camera', this.#local.camera);
    if (this.#local.screen) this.#add(session, 'screen', this.#local.screen);
    if (this.chat) this.#openChat(session);
    if (!pc.getTransceivers().length && !this.chat) {
      // Nothing to send: offer to receive so the client still makes the first offer.
      pc.addTransceiver('audio', { direction: 'recvonly' });
    }
  }

  #add(session, source, track) {
    const stream = source === 'screen' ? new MediaStream([track]) : this.#local.stream;
    const layers = source === 'camera' && session.simulcast ? simulcastLayers(track.getSettings().width ?? 0) : [];
    const sender = layers.length
      ? session.pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream], sendEncodings: layers }).sender
      : session.pc.addTrack(track, stream);
    session.sources.set(sender, source);
  }

  /**
   * Asks the node for the layer of received video `trackId` that a tile `width` device pixels
   * wide needs, never above the quality asked for at join; sent only when it changes.
   */
  fitReceivedVideo(trackId, width) {
    const s = this.#session;
    if (!s?.joined || !trackId) return;
    const fits = width < 400 ? 'low' : width < 800 ? 'medium' : 'high';
    const cap = this.#options.quality ?? 'high';
    const quality = QUALITIES[Math.min(QUALITIES.indexOf(fits), QUALITIES.indexOf(cap))];
    if (s.qualities.get(trackId) === quality) return;
    s.qualities.set(trackId, quality);
    s.socket.send('setQuality', { trackId, quality });
  }

  /**
   * Shows the node which participants' videos the page shows now (its page of the grid):
   * with last-N their cameras are forwarded first. Sent only when it changes.
   */
  setViewing(participantIds) {
    const s = this.#session;
    if (!s?.joined || this.lastN === null) return;
    const key = participantIds.join(',');
    if (s.viewing === key) return;
    s.viewing = key;
    s.socket.send('viewing', { participantIds });
  }

  /** Sends only `layers` (0 the lowest) of own video `trackId`, as the node asks (dynacast). */
  async #sendLayers(session, trackId, layers) {
    const source = [...session.ownTracks].find(([, id]) => id === trackId)?.[0];
    const sender = source && this.#senderOf(session, source);
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings?.length) return;
    parameters.encodings.forEach((encoding, i) => {
      encoding.active = layers.includes(i);
    });
    try {
      await sender.setParameters(parameters);
    } catch (error) {
      this.#emit('notice', `Could not change what the ${source} sends: ${error.message}`);
    }
  }

  #senderOf(session, source) {
    for (const [sender, s] of session.sources) if (s === source) return sender;
    return null;
  }

  async #replace(source, track) {
    const s = this.#session;
    if (!s?.pc) return;
    const sender = this.#senderOf(s, source);
    if (sender) await sender.replaceTrack(track);
    else if (track) this.#add(s, source, track);
  }

  #sendMute(source, muted) {
    const s = this.#session;
    const trackId = s?.ownTracks.get(source);
    if (trackId) s.socket.send('mute', { trackId, muted });
  }

  #openChat(session) {
    const channel = session.pc.createDataChannel(this.chat.label, { ordered: true });
    session.chat = channel;
    channel.onopen = () => this.#emit('chatready', true);
    channel.onclose = () => this.#emit('chatready', false);
    channel.onmessage = (e) => {
      if (typeof e.data !== 'string') return;
      try {
        const m = JSON.parse(e.data);
        this.#emit('chat', { participantId: m.participantId, identity: m.identity, name: m.name || m.identity, message: String(m.message) });
      } catch {
        // Not a relayed chat message.
      }
    };
  }

  /** Runs one negotiation step after the previous ones finished. */
  #negotiate(session, step) {
    session.queue = session.queue.then(async () => {
      if (session.closed || session !== this.#session || !session.pc) return;
      try {
        await step();
      } catch (error) {
        this.#emit('notice', `Negotiation: ${error.message}`);
      }
    });
    return session.queue;
  }

  /**
   * The client offers when stable (it is the impolite peer: when offers cross, the node rolls
   * its own back). Not stable: the browser asks again once it is.
   */
  async #offer(session) {
    const pc = session.pc;
    if (pc.signalingState !== 'stable') return;
    const offer = await pc.createOffer();
    if (pc.signalingState !== 'stable') return;
    await pc.setLocalDescription(offer);
    session.socket.send('offer', { sdp: pc.localDescription.sdp, tracks: this.#describe(session) });
  }

  async #onAnswer(session, sdp) {
    const pc = session.pc;
    if (pc.signalingState !== 'have-local-offer') return;
    this.#mapRemote(session, sdp);
    await pc.setRemoteDescription({ type: 'answer', sdp });
    await this.#flushCandidates(session);
  }

  /** Names the source of each track the local offer sends, by its msid track id. */
  #describe(session) {
    const pc = session.pc;
    const tracks = [];
    for (const { mid, trackId } of sections(pc.localDescription.sdp)) {
      if (!trackId || trackId === '-') continue;
      const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
      const source = transceiver && session.sources.get(transceiver.sender);
      if (source) tracks.push({ trackId, source });
    }
    return tracks;
  }

  #mapRemote(session, sdp) {
    for (const { mid, trackId } of sections(sdp)) {
      if (mid && trackId && trackId !== '-') session.remoteMids.set(mid, trackId);
    }
  }

  async #onOffer(session, sdp) {
    const pc = session.pc;
    // Our own offer is pending: ignore the node's, it rolls back and offers again later.
    if (pc.signalingState !== 'stable') return;
    this.#mapRemote(session, sdp);
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await this.#flushCandidates(session);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    session.socket.send('answer', { sdp: pc.localDescription.sdp });
  }

  async #flushCandidates(session) {
    const pending = session.pendingCandidates.splice(0);
    for (const c of pending) await session.pc.addIceCandidate(c).catch(() => {});
  }

  #onMediaState(session) {
    if (session !== this.#session || FINAL.has(this.#state)) return;
    const state = session.pc.connectionState;
    clearTimeout(session.disconnectTimer);
    if (state === 'connected') {
      session.iceRestarts = 0;
      this.#lostSince = 0;
      this.#attempt = 0;
      this.#setState(State.CONNECTED);
    } else if (state === 'disconnected') {
      this.#setState(State.RECONNECTING, 'media connection interrupted');
      session.disconnectTimer = setTimeout(() => this.#restartIce(session), DISCONNECTED_GRACE_MS);
    } else if (state === 'failed') {
      this.#restartIce(session);
    }
  }

  #restartIce(session) {
    if (session !== this.#session || session.closed) return;
    session.iceRestarts += 1;
    if (session.iceRestarts > ICE_RESTARTS_BEFORE_RECONNECT || !session.socket.open) {
      this.#closeSession(session);
      this.#retry('the media connection failed');
      return;
    }
    this.#setState(State.RECONNECTING, 'restarting ICE');
    session.pc.restartIce();
  }

  #stopLocal() {
    for (const t of [this.#local.microphone, this.#local.camera, this.#local.screen]) t?.stop();
  }

  #setState(state, reason = '') {
    const changed = state !== this.#state || reason !== this.reason;
    this.#state = state;
    this.reason = reason;
    if (changed) this.#emit('state', { state, reason });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The `turns:` URLs of `servers` (TURN over TLS), without the servers left with none. */
function onlyTls(servers) {
  return servers
    .map((s) => ({ ...s, urls: [s.urls].flat().filter((u) => u.startsWith('turns:')) }))
    .filter((s) => s.urls.length > 0);
}
