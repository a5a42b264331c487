// The softphone's audio thread (an AudioWorklet module, loaded by /softphone.js).
// Both processors talk to the softphone's Worker (/softphone-worker.js) over a port the page
// hands them ({type: "port"}), so audio, marks and echoes never wait for the page's main
// thread (React re-rendering the transcript would delay an echo, and the relay would then
// misjudge what was heard).
//
// softphone-capture: the microphone at the context's rate -> low-pass and resample to the
//   call's rate (8 kHz mu-law, or 24 kHz PCM16) -> 20 ms frames, with their level.
// softphone-player: the assistant's audio in a playback buffer, resampled to the context's
//   rate as it plays; marks are echoed exactly when the audio queued before them has
//   played (at once when nothing is queued) and all pending ones on `clear`, as Twilio
//   does: the relay's barge-in truncation is computed from these echoes.

const FRAME_MS = 20;

// --- G.711 mu-law (ITU-T), as shared/audio.py ----------------------------------------------

const MULAW_TO_FLOAT = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const exponent = (u >> 4) & 0x07;
  const sample = ((((u & 0x0f) << 3) + 0x84) << exponent) - 0x84;
  MULAW_TO_FLOAT[i] = ((u & 0x80) ? -sample : sample) / 32768;
}

function mulawEncode(sample) {
  const sign = sample < 0 ? 0x80 : 0;
  let s = Math.min(Math.abs(sample), 32635) + 0x84;
  let exponent = 7;
  for (let mask = 0x4000; exponent > 0 && !(s & mask); mask >>= 1) exponent--;
  return ~(sign | (exponent << 4) | ((s >> (exponent + 3)) & 0x0f)) & 0xff;
}

function toInt16(x) {
  return Math.max(-32768, Math.min(32767, Math.round(x * 32768)));
}

// --- resampling: a windowed-sinc low-pass, evaluated at any fractional position ------------
// The cut-off sits below the lower rate's Nyquist frequency (3.6 kHz for 8 kHz), so
// downsampling never folds the microphone's highs into the call (no bare decimation).

class Kernel {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    const cutoff = Math.min(1, outRate / inRate) * 0.9; // of the input's Nyquist frequency
    this.half = Math.ceil(8 / cutoff); // 8 zero crossings each side
    this.res = 32; // table points per input sample, linearly interpolated
    const n = this.half * this.res + 2;
    this.table = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = i / this.res;
      const t = x / this.half;
      if (t >= 1) continue;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * cutoff * x) / (Math.PI * cutoff * x);
      const blackman = 0.42 + 0.5 * Math.cos(Math.PI * t) + 0.08 * Math.cos(2 * Math.PI * t);
      this.table[i] = cutoff * sinc * blackman;
    }
  }

  weight(distance) {
    const p = Math.abs(distance) * this.res;
    const i = p | 0;
    if (i >= this.table.length - 1) return 0;
    const f = p - i;
    return this.table[i] * (1 - f) + this.table[i + 1] * f;
  }
}

// --- capture ---------------------------------------------------------------------------------

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rate, format } = options.processorOptions;
    this.format = format; // "pcmu" | "pcm24"
    this.kernel = new Kernel(sampleRate, rate);
    this.frameLen = (rate * FRAME_MS) / 1000;
    this.frame = new Float32Array(this.frameLen);
    this.filled = 0;
    // Input history; `pos` is where the next output sample is centred, in input samples
    // from history[0]. It starts `half` in, on leading silence, so no sample is lost.
    this.history = new Float32Array(4096);
    this.length = this.kernel.half;
    this.pos = this.kernel.half;
    this.muted = false;
    this.out = this.port; // until the Worker's port arrives
    this.port.onmessage = (e) => {
      if (e.data.type === "mute") this.muted = !!e.data.muted;
      else if (e.data.type === "port") this.out = e.data.port;
    };
  }

  push(input) {
    if (this.length + input.length > this.history.length) {
      const bigger = new Float32Array((this.length + input.length) * 2);
      bigger.set(this.history.subarray(0, this.length));
      this.history = bigger;
    }
    this.history.set(input, this.length);
    this.length += input.length;
    const k = this.kernel;
    const h = this.history;
    while (this.pos + k.half < this.length) {
      const lo = Math.ceil(this.pos - k.half);
      const hi = Math.floor(this.pos + k.half);
      let acc = 0;
      for (let j = lo; j <= hi; j++) acc += h[j] * k.weight(this.pos - j);
      this.frame[this.filled++] = acc;
      if (this.filled === this.frameLen) this.emit();
      this.pos += k.step;
    }
    // Keep what the next output samples still need.
    const keep = Math.floor(this.pos - k.half);
    if (keep > 0) {
      h.copyWithin(0, keep, this.length);
      this.length -= keep;
      this.pos -= keep;
    }
  }

  emit() {
    const frame = this.frame;
    let sum = 0;
    for (let i = 0; i < frame.length; i++) sum += frame[i] * frame[i];
    const rms = Math.sqrt(sum / frame.length);
    let bytes;
    if (this.format === "pcmu") {
      bytes = new Uint8Array(frame.length);
      for (let i = 0; i < frame.length; i++) bytes[i] = this.muted ? 0xff : mulawEncode(toInt16(frame[i]));
    } else {
      const pcm = new Int16Array(frame.length); // little-endian on every platform we run on
      if (!this.muted) for (let i = 0; i < frame.length; i++) pcm[i] = toInt16(frame[i]);
      bytes = new Uint8Array(pcm.buffer);
    }
    this.out.postMessage({ type: "frame", bytes, rms: this.muted ? 0 : rms }, [bytes.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.push(channel);
    return true;
  }
}

// --- playback --------------------------------------------------------------------------------

const STATS_EVERY = 16; // render quanta between stats messages (~40 ms)
const UNDERRUN_GAP_S = 0.25; // audio within this long of running dry continues an answer
const HOLD_ENOUGH_S = 0.25; // queued audio that absorbs jitter by itself

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rate, format } = options.processorOptions;
    this.rate = rate;
    this.format = format;
    this.kernel = new Kernel(rate, sampleRate);
    // Samples by absolute index in a growable ring: [tail, written) is kept.
    this.ring = new Float32Array(1 << 17);
    this.mask = this.ring.length - 1;
    this.written = 0; // end of the queued audio
    this.pos = 0; // the read position (the kernel's centre), in input samples
    this.segStart = 0; // samples before this are silence (a fresh start or a clear)
    this.marks = []; // {name, at}: echoed once `pos` passes `at`
    this.playing = false;
    this.holding = false; // a jitter cushion before resuming (see start)
    this.holdDeadline = 0;
    this.dryAt = -1; // audio time the buffer last ran dry while playing
    this.jitterS = 0; // smoothed length of underrun gaps
    this.underruns = 0;
    this.played = 0; // input samples played, in total
    this.quanta = 0;
    this.out = this.port; // until the Worker's port arrives
    this.port.onmessage = (e) => {
      if (e.data.type !== "port") return;
      this.out = e.data.port;
      this.out.onmessage = (m) => this.onMessage(m.data);
    };
  }

  onMessage(msg) {
    if (msg.type === "audio") this.enqueue(msg.bytes);
    else if (msg.type === "mark") {
      if (!this.playing && this.written <= this.pos) this.echo([msg.name], false);
      else this.marks.push({ name: msg.name, at: this.written });
    } else if (msg.type === "clear") this.clear();
  }

  enqueue(buffer) {
    const bytes = new Uint8Array(buffer);
    const samples = this.format === "pcmu" ? bytes.length : bytes.length >> 1;
    this.reserve(samples);
    if (this.format === "pcmu") {
      for (let i = 0; i < samples; i++) this.ring[(this.written + i) & this.mask] = MULAW_TO_FLOAT[bytes[i]];
    } else {
      const view = new DataView(buffer);
      for (let i = 0; i < samples; i++) {
        this.ring[(this.written + i) & this.mask] = view.getInt16(2 * i, true) / 32768;
      }
    }
    if (!this.playing) this.start();
    this.written += samples;
  }

  start() {
    // Audio into an empty buffer plays at once (the relay times its round trip on that),
    // unless it continues an answer that ran dry a moment ago (the network or the model
    // was late): then it waits a cushion, sized by the gaps seen so far, so the next late
    // packet finds audio still queued. A burst (HOLD_ENOUGH_S queued) needs no cushion.
    this.playing = true;
    this.pos = this.segStart = this.written;
    if (this.dryAt >= 0 && currentTime - this.dryAt < UNDERRUN_GAP_S) {
      this.underruns++;
      const gap = currentTime - this.dryAt;
      this.jitterS = this.jitterS ? 0.8 * this.jitterS + 0.2 * gap : gap;
      this.holding = true;
      this.holdDeadline = currentTime + Math.min(0.1, Math.max(0.02, 2 * this.jitterS));
    }
    this.dryAt = -1;
  }

  reserve(n) {
    const tail = Math.floor(Math.min(this.pos, this.written) - this.kernel.half) - 1;
    const needed = this.written + n - tail;
    if (needed <= this.ring.length) return;
    let size = this.ring.length;
    while (size < needed) size *= 2;
    const bigger = new Float32Array(size);
    for (let j = Math.max(0, tail); j < this.written; j++) bigger[j & (size - 1)] = this.ring[j & this.mask];
    this.ring = bigger;
    this.mask = size - 1;
  }

  sample(j) {
    return j >= this.segStart && j < this.written ? this.ring[j & this.mask] : 0;
  }

  echo(names, cleared) {
    if (names.length) this.out.postMessage({ type: "marks", names, cleared, playedMs: this.playedMs() });
  }

  playedMs() {
    return (this.played * 1000) / this.rate;
  }

  clear() {
    // Where the item being played was cut: the first pending mark names the item and the
    // ms at its end; the audio still queued before it was not heard.
    const next = this.marks.find((m) => m.at > this.pos);
    let item = null;
    let playedMs = null;
    if (next && this.playing) {
      const cut = next.name.lastIndexOf(":");
      item = next.name.slice(0, cut);
      const endMs = Number(next.name.slice(cut + 1));
      playedMs = endMs - ((next.at - Math.min(this.pos, next.at)) * 1000) / this.rate;
    }
    const names = this.marks.map((m) => m.name);
    this.marks = [];
    this.pos = this.segStart = this.written;
    this.playing = false;
    this.dryAt = -1;
    this.holding = false;
    this.out.postMessage({ type: "cleared", item, playedMs });
    this.echo(names, true);
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const k = this.kernel;
    if (this.holding) {
      const queuedS = (this.written - this.pos) / this.rate;
      if (currentTime >= this.holdDeadline || queuedS >= HOLD_ENOUGH_S) this.holding = false;
    }
    if (!this.playing || this.holding) {
      out.fill(0);
    } else {
      const start = this.pos;
      for (let i = 0; i < out.length; i++) {
        const p = this.pos;
        const lo = Math.ceil(p - k.half);
        const hi = Math.floor(p + k.half);
        let acc = 0;
        for (let j = lo; j <= hi; j++) acc += this.sample(j) * k.weight(p - j);
        out[i] = acc;
        this.pos = p + k.step;
      }
      this.played += Math.min(this.pos, this.written) - Math.min(start, this.written);
      let n = 0;
      while (n < this.marks.length && this.marks[n].at <= this.pos) n++;
      if (n) this.echo(this.marks.splice(0, n).map((m) => m.name), false);
      if (this.pos >= this.written) {
        // Ran dry: every mark has played (Twilio's "buffer empty").
        this.playing = false;
        this.pos = this.written;
        this.dryAt = currentTime;
        this.echo(this.marks.splice(0).map((m) => m.name), false);
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.quanta % STATS_EVERY === 0) {
      this.out.postMessage({
        type: "stats",
        playedMs: this.playedMs(),
        bufferedMs: ((this.written - Math.min(this.pos, this.written)) * 1000) / this.rate,
        underruns: this.underruns,
      });
    }
    return true;
  }
}

registerProcessor("softphone-capture", Capture);
registerProcessor("softphone-player", Player);
