// The console's softphone: talk to the agent from this page, through the console backend.
//
// Talk asks the console backend (Reflex state) for a one-time ticket, then calls start():
// the microphone goes through an AudioWorklet (low-pass, resample, 20 ms frames of 8 kHz
// mu-law or 24 kHz PCM16) and a Worker (/softphone-worker.js) to the backend's
// /_console/softphone socket, which carries the call to the relay as a Twilio-like media
// stream. The assistant's audio plays through a second worklet that echoes marks as Twilio
// does. This main thread only sets things up, draws the controls and keeps the counters;
// the page never sees a relay address or token.
//
// Counters for tests and curious people: window.phoneRelaySoftphone.stats.
(function () {
  if (window.phoneRelaySoftphone) return;

  const RATES = { pcmu: 8000, pcm24: 24000 };
  const MAX_LOG = 2000;
  const newStats = () => ({
    state: "idle", // idle | connecting | live | ended
    callSid: "",
    streamSid: "",
    audio: "",
    reason: "", // why the last call ended
    muted: false,
    level: 0, // the input level, 0..1 (-60..0 dBFS)
    framesSent: 0,
    msPlayed: 0, // assistant audio played
    bufferedMs: 0,
    underruns: 0,
    marks: [], // {name, item, ms, at (epoch ms, when echoed), playedMs, cleared}
    clears: [], // {item, playedMs (where that item was cut), at}
    dtmf: [],
    settings: null, // the microphone track's settings (echoCancellation...)
    sampleRate: 0,
  });

  const phone = { stats: newStats(), ctx: null, modulePromise: null, call: null };
  window.phoneRelaySoftphone = phone;

  const el = (id) => document.getElementById(id);

  function render() {
    const s = phone.stats;
    const root = el("softphone");
    if (!root) return;
    root.dataset.state = s.state;
    root.dataset.muted = String(s.muted);
    const status = el("softphone-status");
    if (status) {
      let text = "";
      if (s.state === "connecting") text = "Connecting…";
      else if (s.state === "live") text = `In call …${s.callSid.slice(-6)}` + (s.muted ? " (muted)" : "");
      else if (s.state === "ended") text = `Call ended: ${s.reason}`;
      if (status.textContent !== text) status.textContent = text;
    }
    const bar = el("softphone-level-bar");
    if (bar) bar.style.width = `${Math.round(s.level * 100)}%`;
  }
  setInterval(render, 100); // also puts the state back if React re-rendered the panel

  // Called in the click's own task, so that the browser lets the audio start.
  phone.prime = function () {
    if (!phone.ctx) phone.ctx = new AudioContext({ latencyHint: "interactive" });
    phone.ctx.resume();
    if (!phone.modulePromise) phone.modulePromise = phone.ctx.audioWorklet.addModule("/softphone-worklet.js");
  };

  function socketUrl(path) {
    const root = el("softphone");
    const origin = (root && root.dataset.backend) || window.location.origin;
    return origin.replace(/^http/, "ws") + path;
  }

  function log(list, entry) {
    list.push(entry);
    if (list.length > MAX_LOG) list.splice(0, list.length - MAX_LOG);
  }

  function teardown(call) {
    if (call.stream) call.stream.getTracks().forEach((t) => t.stop());
    for (const node of [call.capture, call.player]) if (node) node.disconnect();
    if (call.worker) setTimeout(() => call.worker.terminate(), 1000); // let the stop go out
    if (phone.call === call) phone.call = null;
  }

  function onWorker(st, call, msg) {
    if (msg.type === "state") {
      if (st.state === "ended") return;
      st.state = msg.state;
      if (msg.streamSid) st.streamSid = msg.streamSid;
      if (msg.state === "ended") {
        st.reason = st.reason || msg.reason;
        st.level = 0;
        teardown(call);
      }
      render();
    } else if (msg.type === "marks") {
      for (const name of msg.names) {
        const cut = name.lastIndexOf(":");
        const entry = { name, item: name.slice(0, cut), ms: Number(name.slice(cut + 1)) };
        log(st.marks, { ...entry, at: msg.at, playedMs: msg.playedMs, cleared: msg.cleared });
      }
    } else if (msg.type === "cleared") {
      log(st.clears, { item: msg.item, playedMs: msg.playedMs, at: msg.at });
    } else if (msg.type === "stats") {
      st.msPlayed = msg.playedMs;
      st.bufferedMs = msg.bufferedMs;
      st.underruns = msg.underruns;
    } else if (msg.type === "sent") {
      st.framesSent = msg.framesSent;
    } else if (msg.type === "level") {
      const db = msg.rms > 0 ? 20 * Math.log10(msg.rms) : -100;
      st.level = st.muted ? 0 : Math.max(0, Math.min(1, (db + 60) / 60));
    }
  }

  // ticket: {path, callSid, audio} from the console backend (a one-time, signed URL).
  phone.start = async function (ticket) {
    if (phone.call) return; // one call at a time
    const st = (phone.stats = newStats());
    const call = (phone.call = { stream: null, capture: null, player: null, worker: null });
    st.state = "connecting";
    st.callSid = ticket.callSid;
    st.audio = ticket.audio;
    render();
    try {
      phone.prime();
      await phone.modulePromise;
      call.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      if (st.state !== "connecting") throw new Error("hung up while starting");
      st.settings = call.stream.getAudioTracks()[0].getSettings();
      const ctx = phone.ctx;
      st.sampleRate = ctx.sampleRate;
      const options = { rate: RATES[ticket.audio], format: ticket.audio };
      call.capture = new AudioWorkletNode(ctx, "softphone-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0, // the browser pulls it on its own; there is nothing to hear
        processorOptions: options,
      });
      call.player = new AudioWorkletNode(ctx, "softphone-player", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: options,
      });
      const toCapture = new MessageChannel();
      const toPlayer = new MessageChannel();
      call.capture.port.postMessage({ type: "port", port: toCapture.port1 }, [toCapture.port1]);
      call.player.port.postMessage({ type: "port", port: toPlayer.port1 }, [toPlayer.port1]);
      call.capture.port.postMessage({ type: "mute", muted: st.muted });
      ctx.createMediaStreamSource(call.stream).connect(call.capture);
      call.player.connect(ctx.destination);
      call.worker = new Worker("/softphone-worker.js");
      call.worker.onmessage = (e) => onWorker(st, call, e.data);
      call.worker.postMessage(
        { type: "start", url: socketUrl(ticket.path), capture: toCapture.port2, player: toPlayer.port2 },
        [toCapture.port2, toPlayer.port2],
      );
    } catch (err) {
      st.reason = st.reason || `could not start: ${err && err.message ? err.message : err}`;
      st.state = "ended";
      teardown(call);
      render();
    }
  };

  phone.hangUp = function () {
    const st = phone.stats;
    const call = phone.call;
    if (!call || (st.state !== "connecting" && st.state !== "live")) return;
    st.reason = "you hung up";
    if (call.worker) call.worker.postMessage({ type: "stop", reason: st.reason });
    else st.state = "ended"; // still asking for the microphone
    render();
  };

  phone.toggleMute = function () {
    const st = phone.stats;
    st.muted = !st.muted;
    if (st.muted) st.level = 0;
    if (phone.call && phone.call.capture) {
      phone.call.capture.port.postMessage({ type: "mute", muted: st.muted });
    }
    render();
  };

  phone.dtmf = function (digit) {
    const st = phone.stats;
    if (st.state !== "live" || !phone.call || !phone.call.worker) return;
    phone.call.worker.postMessage({ type: "dtmf", digit });
    log(st.dtmf, { digit, at: performance.timeOrigin + performance.now() });
  };

  window.addEventListener("pagehide", () => phone.hangUp());
})();
