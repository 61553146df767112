// vasa live page: audio up (16-bit PCM, 16 kHz) over a WebSocket, frames + their audio down.
// Frame message: uint32 index, float64 time_s (audio clock), uint32 PCM bytes, PCM, JPEG (little endian).
"use strict";
const RATE = 16000;
const CHUNK = 320;          // 20 ms of audio per message up
const JITTER_S = 0.3;       // playback starts this long after the first frame arrives (absorbs compute and network
                            // jitter), plus how much longer than the first frame a later frame may wait by design
const DECODE_S = 0.02;       // a frame must arrive this long before its time to be decoded and drawn in time
const REBUFFER_S = 0.1;     // when one arrives later, playback moves back by its delay plus this much
const $ = (id) => document.getElementById(id);

const stats = { frames: 0, shown: 0, firstFrameMs: null, fps: null, maxDriftMs: null, lateAudio: 0,
                rebuffers: 0, rebufferMs: 0, dropped: 0, designLatencyMs: null, firstFrameWaitMs: null, done: false, error: null, streaming: false, driftsMs: [] };
window.vasa = { stats };     // read by the browser test

let picked = null, ws = null, ctx = null, input = null, micStream = null, pc = null, controlsChannel = null;
let pending = new Int16Array(CHUNK), pendingLength = 0;
let sendStart = null, playStart = null, lastShown = -1, arrivals = [];
const queue = [];            // decoded frames waiting for their time: {index, t, bitmap}

function say(text) { $("message").textContent = text || ""; }

async function loadPortraits() {
  const list = await (await fetch("/api/portraits")).json();
  $("portraits").innerHTML = "";
  for (const p of list) addPortrait(p);
  if (list.length && !picked) pick(list[0].id);
}

function addPortrait(p) {
  const img = document.createElement("img");
  img.src = `/api/portraits/${p.id}.jpg`; img.title = p.name; img.dataset.id = p.id;
  img.onclick = () => pick(p.id);
  $("portraits").appendChild(img);
}

function pick(id) {
  picked = id;
  for (const img of $("portraits").children) img.classList.toggle("picked", img.dataset.id === id);
}

$("upload").onchange = async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  say("encoding the portrait...");
  const response = await fetch("/api/portraits", { method: "POST", body: file });
  const body = await response.json();
  if (!response.ok) return say(body.message);
  say("");
  if (![...$("portraits").children].some((img) => img.dataset.id === body.id)) addPortrait(body);
  pick(body.id);
};

function sendAudio(samples) {              // Float32Array at 16 kHz -> 20 ms int16 messages
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    pending[pendingLength++] = s < 0 ? s * 32768 : s * 32767;
    if (pendingLength === CHUNK) flushAudio();
  }
}

function flushAudio() {
  if (!pendingLength || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (sendStart === null) sendStart = performance.now();
  ws.send(pending.slice(0, pendingLength).buffer);
  pendingLength = 0;
}

function onFrame(buffer) {
  const view = new DataView(buffer);
  const index = view.getUint32(0, true), t = view.getFloat64(4, true), pcmBytes = view.getUint32(12, true);
  const pcm = new Int16Array(buffer.slice(16, 16 + pcmBytes));
  const jpeg = new Blob([buffer.slice(16 + pcmBytes)], { type: "image/jpeg" });
  const now = performance.now();
  if (playStart === null) {
    stats.firstFrameMs = Math.round(now - sendStart);
    playStart = ctx.currentTime + JITTER_S + Math.max(0, (stats.designLatencyMs - stats.firstFrameWaitMs) / 1000 || 0);
  }
  stats.frames++;
  arrivals.push(now);
  while (arrivals.length && arrivals[0] < now - 2000) arrivals.shift();
  if (arrivals.length > 1) stats.fps = +(1000 * (arrivals.length - 1) / (now - arrivals[0])).toFixed(1);
  // A frame later than its slot (the server fell behind: a busy machine) would put picture and voice
  // apart; instead the whole schedule moves back, with a short pause in both, and they stay together.
  const late = ctx.currentTime + DECODE_S - (playStart + t);
  if (late > 0) {
    playStart += late + REBUFFER_S;
    stats.rebuffers++;
    stats.rebufferMs += Math.round(1000 * (late + REBUFFER_S));
  }
  if ($("playback").checked && pcm.length) {
    const audio = ctx.createBuffer(1, pcm.length, RATE);
    const channel = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const node = ctx.createBufferSource();
    node.buffer = audio;
    node.connect(ctx.destination);
    const at = playStart + t;
    if (at < ctx.currentTime) stats.lateAudio++;
    node.start(Math.max(at, ctx.currentTime));
  }
  createImageBitmap(jpeg).then((bitmap) => queue.push({ index, t, bitmap }));
}

function draw() {                          // show the newest frame whose time has come on the audio clock
  if (playStart !== null && ctx) {
    const media = ctx.currentTime - playStart;
    let frame = null;
    while (queue.length && queue[0].t <= media) {
      if (frame) frame.bitmap.close();
      frame = queue.shift();
    }
    if (frame) {
      const canvas = $("video");
      canvas.getContext("2d").drawImage(frame.bitmap, 0, 0, canvas.width, canvas.height);
      frame.bitmap.close();
      lastShown = frame.index;
      stats.shown++;
      const driftMs = 1000 * (media - frame.t);   // audio position minus the shown frame's time
      stats.maxDriftMs = Math.max(stats.maxDriftMs ?? 0, Math.round(driftMs));
      stats.driftsMs.push(Math.round(driftMs));
      if (stats.driftsMs.length > 3000) stats.driftsMs.shift();
    }
  }
  showStats();
}

function showStats() {
  if (!stats.streaming && !stats.done) return;
  if (stats.transport === "webrtc") {
    $("stats").textContent =
      `first frame      ${stats.firstFrameMs ?? "-"} ms after the first audio sent (WebRTC)\n` +
      `design latency   ${stats.designLatencyMs ?? "-"} ms (audio a frame waits for)\n` +
      `frames           ${stats.frames} decoded, ${stats.shown} shown, ${stats.dropped} dropped\n` +
      `receive rate     ${stats.fps ?? "-"} fps\n` +
      `audio packets    ${stats.audioPackets}` + (stats.done ? "\ndone" : "");
    return;
  }
  $("stats").textContent =
    `first frame      ${stats.firstFrameMs ?? "-"} ms after the first audio sent\n` +
    `design latency   ${stats.designLatencyMs ?? "-"} ms (audio a frame waits for)\n` +
    `frames           ${stats.frames} received, ${stats.shown} shown, ${stats.dropped} dropped\n` +
    `receive rate     ${stats.fps ?? "-"} fps\n` +
    `max A/V offset   ${stats.maxDriftMs ?? "-"} ms (one frame = 40 ms)\n` +
    `late audio       ${stats.lateAudio} chunks\n` +
    `rebuffers        ${stats.rebuffers} (${stats.rebufferMs} ms of pauses: the server fell behind)` +
    (stats.done ? "\ndone" : "");
}

async function start(kind, file) {
  if (!picked) return say("pick a portrait first");
  await stop();
  showTransport($("webrtc").checked);
  if ($("webrtc").checked) return startRtc(kind, file);
  Object.assign(stats, { frames: 0, shown: 0, firstFrameMs: null, fps: null, maxDriftMs: null, lateAudio: 0,
                         rebuffers: 0, rebufferMs: 0, dropped: 0, done: false, error: null, streaming: true, driftsMs: [],
                         transport: "websocket" });
  sendStart = playStart = null; pendingLength = 0; arrivals = []; queue.length = 0; say("");
  ctx = new AudioContext({ sampleRate: RATE });
  await ctx.audioWorklet.addModule("/static/capture.js");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  const ready = new Promise((resolve, reject) => {
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return onFrame(event.data);
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        stats.designLatencyMs = message.design_latency_ms;
        stats.firstFrameWaitMs = message.first_frame_wait_ms;
        resolve();
      } else if (message.type === "stats" || message.type === "done") {
        stats.dropped = message.dropped;
        if (message.type === "done") { stats.done = true; stats.streaming = false; setButtons(false); }
      } else if (message.type === "error") { stats.error = message.message; say(message.message); reject(); }
    };
    ws.onclose = () => { stats.streaming = false; setButtons(false); reject(); };
  });
  ws.onopen = () => ws.send(JSON.stringify({ type: "start", portrait: picked, ...motionControls() }));
  try { await ready; } catch { return; }
  const capture = new AudioWorkletNode(ctx, "vasa-capture");
  const mute = ctx.createGain();
  mute.gain.value = 0;
  capture.connect(mute).connect(ctx.destination);   // keeps the worklet running, silently
  capture.port.onmessage = (event) => sendAudio(event.data);
  if (kind === "mic") {
    micStream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    input = ctx.createMediaStreamSource(micStream);
  } else {
    const data = file ? await file.arrayBuffer() : await (await fetch("/api/demo_speech.wav")).arrayBuffer();
    input = ctx.createBufferSource();
    input.buffer = await ctx.decodeAudioData(data);
    input.onended = () => setTimeout(() => { flushAudio(); if (ws) ws.send(JSON.stringify({ type: "end" })); }, 50);
    input.start();
  }
  input.connect(capture);
  setButtons(true);
}

function emotionControl() {   // {name: weight}, or null for none
  return $("emotion").value === "" ? null : { [$("emotion").value]: Number($("emotion_weight").value) };
}

function sendEmotion() {   // while streaming the face turns to the new emotion at once (docs/serve.md)
  const message = JSON.stringify({ type: "controls", emotion: emotionControl() });
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(message);
  if (controlsChannel && controlsChannel.readyState === "open") controlsChannel.send(message);
}

function showTransport(rtc) {
  $("video").style.display = rtc ? "none" : "";
  $("rtcvideo").style.display = rtc ? "block" : "none";
}

async function startRtc(kind, file) {        // WebRTC: the audio up and the portrait back as media tracks
  Object.assign(stats, { frames: 0, shown: 0, firstFrameMs: null, fps: null, maxDriftMs: null, lateAudio: 0,
                         rebuffers: 0, rebufferMs: 0, dropped: 0, done: false, error: null, streaming: true,
                         driftsMs: [], transport: "webrtc", audioPackets: 0 });
  sendStart = null; say("");
  ctx = new AudioContext();
  let track;
  if (kind === "mic") {
    micStream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    track = micStream.getAudioTracks()[0];
  } else {
    const data = file ? await file.arrayBuffer() : await (await fetch("/api/demo_speech.wav")).arrayBuffer();
    const out = ctx.createMediaStreamDestination();
    input = ctx.createBufferSource();
    input.buffer = await ctx.decodeAudioData(data);
    input.connect(out);
    input.onended = () => setTimeout(() => { stats.done = true; stop(); }, 3000);  // the last frames come after
    track = out.stream.getAudioTracks()[0];
  }
  pc = new RTCPeerConnection();
  pc.addTrack(track, new MediaStream([track]));
  pc.addTransceiver("video", { direction: "recvonly" });
  controlsChannel = pc.createDataChannel("controls");
  const remote = new MediaStream(), video = $("rtcvideo");
  video.muted = !$("playback").checked;
  pc.ontrack = (event) => { remote.addTrack(event.track); video.srcObject = remote; };
  pc.onconnectionstatechange = () => {
    if (!pc) return;
    if (pc.connectionState === "connected" && sendStart === null) {
      sendStart = performance.now();            // the first audio leaves now
      if (input && input.start) input.start();
    } else if (["failed", "closed", "disconnected"].includes(pc.connectionState)) {
      stats.streaming = false; setButtons(false);
    }
  };
  const onVideoFrame = (now) => {              // each frame the page presents
    if (!pc) return;
    if (stats.firstFrameMs === null && sendStart !== null) stats.firstFrameMs = Math.round(now - sendStart);
    stats.shown++;
    video.requestVideoFrameCallback(onVideoFrame);
  };
  video.requestVideoFrameCallback(onVideoFrame);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {             // non-trickle: the offer carries its candidates
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000);
  });
  const response = await fetch("/api/webrtc/offer", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ portrait: picked, ...motionControls(), sdp: { type: "offer", sdp: pc.localDescription.sdp } }) });
  const answer = await response.json();
  if (!response.ok) {
    stats.error = answer.message; say(answer.message); stats.streaming = false;
    pc.close(); pc = null; return;
  }
  stats.designLatencyMs = answer.design_latency_ms;
  stats.firstFrameWaitMs = answer.first_frame_wait_ms;
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  setButtons(true);
  rtcStats();
}

async function rtcStats() {                    // what the browser's WebRTC stack received
  while (pc) {
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") {
        stats.frames = r.framesDecoded || 0;
        stats.dropped = r.framesDropped || 0;
        stats.fps = r.framesPerSecond ?? stats.fps;
      } else if (r.type === "inbound-rtp" && r.kind === "audio") {
        stats.audioPackets = r.packetsReceived || 0;
      }
    });
    showStats();
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function motionControls() {   // the optional fields of the start message (docs/serve.md)
  const controls = { head_scale: Number($("head_scale").value), expression_scale: Number($("expression_scale").value),
                     still: $("still").checked };
  if ($("blinks").value !== "") controls.blinks = Number($("blinks").value);
  if (emotionControl()) controls.emotion = emotionControl();
  return controls;
}

async function stop() {
  if (pc) { pc.close(); pc = null; controlsChannel = null; stats.streaming = false; }
  if (input) { try { input.disconnect(); if (input.stop) input.stop(); } catch {} input = null; }
  if (micStream) { micStream.getTracks().forEach((track) => track.stop()); micStream = null; }
  if (ws && ws.readyState === WebSocket.OPEN) { flushAudio(); ws.send(JSON.stringify({ type: "end" })); }
  setButtons(false);
}

function setButtons(streaming) {
  $("stop").disabled = !streaming;
  $("mic").disabled = $("demo").disabled = streaming;
}

$("mic").onclick = () => start("mic").catch((e) => say(String(e)));
$("demo").onclick = () => start("file").catch((e) => say(String(e)));
$("audiofile").onchange = (event) => event.target.files[0] && start("file", event.target.files[0]);
$("stop").onclick = stop;
$("emotion").onchange = sendEmotion;
$("emotion_weight").onchange = sendEmotion;
setInterval(draw, 8);
loadPortraits().catch((e) => say(String(e)));
