// What the user sees: the participant grid (camera and screen tiles with names, muted marks
// and the active speaker), remote audio (and a Play sound button where the browser blocks it),
// the connection state and the chat log. Built with DOM calls only (no HTML strings), so
// names and messages from others are never markup.

import { routeAudio } from './devices.js';

const STATE_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  failed: 'Connection failed',
  ended: 'Conference ended',
  left: 'Left',
};

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function initials(name) {
  return String(name)
    .split(/[\s._@-]+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join('') || '?';
}

/**
 * The pages of the grid with last-N, `size` other participants a page (ids of `others` in
 * the order they joined): the first holds `stage`, those whose cameras the node forwards (the
 * most recent speakers), then others up to `size` (their cameras are off: were one on, the
 * node would forward it); the rest follow in the order they joined.
 */
export function paginate(others, stage, size) {
  const first = stage.filter((id) => others.includes(id)).slice(0, size);
  for (const id of others) if (first.length < size && !first.includes(id)) first.push(id);
  const rest = others.filter((id) => !first.includes(id));
  const pages = [first];
  for (let i = 0; i < rest.length; i += size) pages.push(rest.slice(i, i + size));
  return pages;
}

export class View {
  #grid;
  /** With last-N: the page of the grid shown, and its first page when last looked at. */
  page = 0;
  #stage = [];
  /** Called with the participant ids the grid shows when the page changes (last-N). */
  onViewing = null;
  #audio;
  #tiles = new Map();
  #sounds = new Map();
  /** Called with (trackId, width in device pixels) when a received video's tile changes. */
  onTileWidth = null;
  #sizes = new ResizeObserver((entries) => {
    for (const e of entries) this.#reportWidth(e.target, e.contentRect.width);
  });

  constructor(root) {
    this.root = root;
    this.#grid = root.querySelector('#grid');
    this.#audio = root.querySelector('#audio');
    this.state = root.querySelector('#state');
    this.stateReason = root.querySelector('#state-reason');
    this.notice = root.querySelector('#notice');
    this.chatLog = root.querySelector('#chat-log');
    this.soundButton = root.querySelector('#sound');
  }

  showState(state, reason) {
    this.state.textContent = STATE_TEXT[state] ?? state;
    this.state.dataset.state = state;
    this.stateReason.textContent = reason ?? '';
  }

  showNotice(text) {
    if (!text) {
      this.notice.hidden = true;
      return;
    }
    this.notice.hidden = false;
    this.notice.textContent = text;
  }

  addChat({ identity, name, message, own }) {
    const line = element('li', own ? 'own' : '');
    line.append(element('span', 'who', own ? 'You' : name ?? identity), element('span', 'text', message));
    this.chatLog.append(line);
    this.chatLog.scrollTop = this.chatLog.scrollHeight;
  }

  /** Redraws tiles and audio from the call's participants and received tracks. */
  render(call, self) {
    const wanted = new Map();
    wanted.set('self:camera', {
      key: 'self:camera', participant: call.selfId, identity: self.identity, name: self.name,
      source: 'camera', track: call.localCamera, muted: call.micMuted, self: true,
    });
    if (call.localScreen) {
      wanted.set('self:screen', {
        key: 'self:screen', participant: call.selfId, identity: self.identity, name: self.name,
        source: 'screen', track: call.localScreen, self: true,
      });
    }
    const sounds = new Map();
    const shown = this.#paginate(call);
    for (const p of call.participants.values()) {
      const infos = [...p.tracks.values()];
      const mic = infos.find((t) => t.kind === 'audio');
      const camera = infos.find((t) => t.source === 'camera' && t.kind === 'video');
      // A stopped share is unpublished; one muted (a client that only mutes it) gets no tile
      // either. Sharing again publishes a new track.
      const screen = infos.find((t) => t.source === 'screen' && t.kind === 'video' && !t.muted);
      const live = (info) => (info && !info.muted ? call.received.get(info.id) ?? null : null);
      // Paused by last-N: the camera shows initials until the node forwards it again.
      const forwarded = !call.forwarded || call.forwarded.has(p.id);
      // Another page's participants get no tile; screens and sound are never paged.
      if (!shown || shown.includes(p.id)) {
        wanted.set(`${p.id}:camera`, {
          key: `${p.id}:camera`, participant: p.id, identity: p.identity, name: p.name, source: 'camera',
          track: forwarded ? live(camera) : null, trackId: camera?.id, muted: !mic || mic.muted,
        });
      }
      if (screen) {
        wanted.set(`${p.id}:screen`, {
          key: `${p.id}:screen`, participant: p.id, identity: p.identity, name: p.name, source: 'screen',
          track: live(screen), trackId: screen.id,
        });
      }
      for (const a of infos.filter((t) => t.kind === 'audio')) {
        const track = call.received.get(a.id);
        if (track) sounds.set(a.id, track);
      }
    }
    for (const [key, tile] of this.#tiles) {
      if (!wanted.has(key)) {
        this.#sizes.unobserve(tile.root);
        tile.root.remove();
        this.#tiles.delete(key);
      }
    }
    for (const [key, want] of wanted) {
      let tile = this.#tiles.get(key);
      if (!tile) {
        tile = this.#tile(want);
        this.#tiles.set(key, tile);
        this.#grid.append(tile.root);
        if (!want.self) this.#sizes.observe(tile.root);
      }
      this.#update(tile, want, call.speaker);
    }
    this.#grid.dataset.count = String(this.#tiles.size);
    this.#renderAudio(sounds);
  }

  /**
   * With last-N, the participants on the page shown (null: everyone), and the pager; tells
   * `onViewing` when the page's participants change.
   */
  #paginate(call) {
    const pager = this.root.querySelector('#pager');
    if (call.lastN === null) {
      pager.hidden = true;
      return null;
    }
    const others = [...call.participants.keys()];
    if (this.page === 0) this.#stage = [...(call.forwarded ?? [])];
    const pages = paginate(others, this.#stage, call.lastN);
    this.page = Math.min(this.page, pages.length - 1);
    pager.hidden = pages.length < 2;
    this.root.querySelector('#page-label').textContent = `Page ${this.page + 1} of ${pages.length}`;
    this.root.querySelector('#page-prev').disabled = this.page === 0;
    this.root.querySelector('#page-next').disabled = this.page === pages.length - 1;
    this.onViewing?.(this.page === 0 ? [] : pages[this.page]);
    return pages[this.page];
  }

  #tile(want) {
    const root = element('figure', `tile ${want.source}`);
    root.dataset.source = want.source;
    const video = element('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    const avatar = element('div', 'avatar');
    const caption = element('figcaption');
    const name = element('span', 'name');
    const mic = element('span', 'mic', 'muted');
    const quality = element('span', 'quality');
    quality.hidden = true;
    caption.append(name, mic, quality);
    root.append(video, avatar, caption);
    return { root, video, avatar, name, mic, quality, track: null };
  }

  #update(tile, want, speaker) {
    tile.root.dataset.participant = String(want.participant ?? '');
    tile.root.dataset.identity = want.identity;
    tile.root.classList.toggle('self', Boolean(want.self));
    tile.root.classList.toggle('speaking', want.participant != null && want.participant === speaker);
    const shown = want.name || want.identity;
    const who = want.self ? `${shown} (you)` : shown;
    tile.name.textContent = want.source === 'screen' ? `${who}: screen` : who;
    tile.mic.hidden = want.source === 'screen' || !want.muted;
    tile.avatar.textContent = initials(shown);
    if (tile.track !== want.track) {
      tile.track = want.track;
      tile.video.srcObject = want.track ? new MediaStream([want.track]) : null;
    }
    if (!want.self && tile.root.dataset.trackId !== (want.trackId ?? '')) {
      tile.root.dataset.trackId = want.trackId ?? '';
      this.#reportWidth(tile.root, tile.root.clientWidth);
    }
    tile.root.classList.toggle('no-video', !want.track);
  }

  /** Shows each remote participant's connection quality (`good`/`fair`/`poor`) on their tiles. */
  showQuality(grades) {
    const byId = new Map([...grades].map(([id, grade]) => [String(id), grade]));
    for (const tile of this.#tiles.values()) {
      const grade = byId.get(tile.root.dataset.participant);
      if (tile.root.classList.contains('self') || !grade) continue;
      tile.quality.hidden = false;
      tile.quality.dataset.quality = grade;
      tile.quality.textContent = `connection ${grade}`;
    }
  }

  #reportWidth(root, cssWidth) {
    const trackId = root.dataset.trackId;
    if (trackId && cssWidth > 0) this.onTileWidth?.(trackId, Math.round(cssWidth * devicePixelRatio));
  }

  #renderAudio(sounds) {
    for (const [id, audio] of this.#sounds) {
      if (!sounds.has(id)) {
        audio.remove();
        this.#sounds.delete(id);
      }
    }
    for (const [id, track] of sounds) {
      if (this.#sounds.has(id)) continue;
      const audio = element('audio');
      audio.dataset.track = id;
      audio.autoplay = true;
      audio.srcObject = new MediaStream([track]);
      routeAudio(audio);
      this.#audio.append(audio);
      this.#sounds.set(id, audio);
      this.#play(audio);
    }
  }

  /**
   * Starts remote audio. A browser that allows sound only after a user gesture (a page
   * opened with join=now, without the lobby's Join click) refuses: the page then offers a
   * "Play sound" button, and the click on it is that gesture.
   */
  #play(audio) {
    audio.play().catch((error) => {
      if (error.name === 'NotAllowedError' && this.#sounds.has(audio.dataset.track)) this.soundButton.hidden = false;
    });
  }

  /** Plays every remote audio again after the user allowed sound (the Play sound click). */
  async resumeSound() {
    const results = await Promise.allSettled([...this.#sounds.values()].map((a) => a.play()));
    this.soundButton.hidden = results.every((r) => r.status === 'fulfilled');
  }

  /** Sends remote audio to another speaker. */
  routeAllAudio(deviceId) {
    for (const audio of this.#sounds.values()) routeAudio(audio, deviceId);
  }
}
