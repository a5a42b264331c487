// The softphone's network thread (a Worker started by /softphone.js): it owns the socket to
// the console backend and talks straight to the two audio worklets over MessagePorts.
// Microphone frames go out, the assistant's audio and marks go to the player, and the
// player's mark echoes go back the moment the audio before them has played: the page's
// main thread (busy re-rendering the console) is never on that path.
//
// From the page: {type: "start", url, capture, player} (two ports), {type: "dtmf", digit},
// {type: "stop"}. To the page: {type: "state", state, reason?, streamSid?},
// {type: "mark", ...}, {type: "clear", ...}, {type: "stats", ...}, {type: "level", level}.
// Times are epoch milliseconds (performance.timeOrigin + now), comparable across threads.

let ws = null;
let player = null;
let state = "idle";
let reason = "";
let framesSent = 0;
let lastLevelAt = 0;

const now = () => performance.timeOrigin + performance.now();

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

function setState(next, extra) {
  state = next;
  postMessage({ type: "state", state, reason, ...extra });
}

function onCapture(msg) {
  if (msg.type !== "frame") return;
  const t = now();
  if (t - lastLevelAt > 50) {
    lastLevelAt = t;
    postMessage({ type: "level", rms: msg.rms });
  }
  if (state !== "live") return; // nothing is sent before the relay has the call
  send({ event: "media", media: { payload: toBase64(new Uint8Array(msg.bytes)) } });
  framesSent += 1;
  if (framesSent % 10 === 0) postMessage({ type: "sent", framesSent });
}

function onPlayer(msg) {
  if (msg.type === "marks") {
    for (const name of msg.names) send({ event: "mark", mark: { name } });
    postMessage({ type: "marks", names: msg.names, cleared: msg.cleared, playedMs: msg.playedMs, at: now() });
  } else if (msg.type === "cleared") {
    postMessage({ type: "cleared", item: msg.item, playedMs: msg.playedMs, at: now() });
  } else if (msg.type === "stats") {
    postMessage(msg);
  }
}

function onFrame(frame) {
  switch (frame.event) {
    case "ready":
      setState("live", { streamSid: frame.streamSid });
      break;
    case "media": {
      const bytes = fromBase64(frame.media.payload);
      player.postMessage({ type: "audio", bytes: bytes.buffer }, [bytes.buffer]);
      break;
    }
    case "mark":
      player.postMessage({ type: "mark", name: frame.mark.name });
      break;
    case "clear":
      player.postMessage({ type: "clear" });
      break;
    case "ended":
      reason = frame.reason || "the call ended";
      break;
  }
}

onmessage = (e) => {
  const msg = e.data;
  if (msg.type === "start") {
    player = msg.player;
    player.onmessage = (m) => onPlayer(m.data);
    msg.capture.onmessage = (m) => onCapture(m.data);
    setState("connecting");
    ws = new WebSocket(msg.url);
    ws.onmessage = (m) => onFrame(JSON.parse(m.data));
    ws.onclose = (m) => {
      reason = reason || m.reason || "the connection to the console closed";
      setState("ended");
    };
  } else if (msg.type === "dtmf") {
    if (state === "live") send({ event: "dtmf", dtmf: { digit: msg.digit } });
  } else if (msg.type === "stop") {
    send({ event: "stop" });
    reason = msg.reason || "you hung up";
    if (ws) ws.close(1000, "hung up");
  }
};
