// Emotune's page: each card calls one endpoint of this gateway and draws its JSON answer; no framework, no build.
// Paths are relative, so the page also works behind a proxy that mounts the gateway under a prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const LIVE_INTERVAL_MS = 500;
const LIVE_SMOOTHING = 5; // frames averaged in live mode
const REQUEST_TIMEOUT_MS = 60000;
const EMOJI = {
  joy: "😄", happy: "😄", love: "🥰", sadness: "😢", sad: "😢", anger: "😠", angry: "😠", fear: "😨", fearful: "😨",
  surprise: "😮", surprised: "😮", disgust: "🤢", neutral: "😐", calm: "😌",
};
const FEATURE_BARS = { valence: "valence", energy: "energy", danceability: "dance", acousticness: "acoustic" };
const MODALITY_NAMES = { text: "Text", speech: "Voice", face: "Face" };

const state = {
  config: { max_audio_seconds: 60, max_upload_bytes: 20 * 1024 * 1024, recommendation_limit: 10, max_recommendation_limit: 50,
    playlist: { enabled: false, message: "" }, enrichment: { enabled: false, message: "" } },
  audio: null, // {blob, name}: the last recording or uploaded file
  image: null, // {blob, name}: the last snapshot or uploaded photo
  music: null, // the list on screen: {mood, emotion, source, strategy, limit, tracks, enrichment}
  stream: null, // the camera
  recorder: null,
  live: false,
};

// --- talking to the gateway ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { json, form, method = "POST" } = {}) {
  const options = { method, headers: { Accept: "application/json" } };
  const key = sessionStorage.getItem("emotune-api-key");
  if (key) options.headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (form !== undefined) {
    options.body = form;
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  options.signal = controller.signal;
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    const timedOut = err && err.name === "AbortError";
    throw new ApiError(0, timedOut ? "timeout" : "network", timedOut ? "the server did not answer in time" : "the server cannot be reached");
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const code = (body && body.error) || `http_${response.status}`;
    const message = (body && body.message) || response.statusText || "no details";
    if (response.status === 401) $("key-form").hidden = false;
    throw new ApiError(response.status, code, message);
  }
  return body;
}

const LEADS = {
  no_face: "No face was found in the picture. Face the camera in good light, or try another photo.",
  audio_too_long: "The recording is too long.",
  audio_too_short: "There is too little speech in the recording; say a full sentence.",
  silent_audio: "The recording is silent: check that the right microphone is on, and speak up.",
  file_too_large: "The file is too large.",
  image_too_large: "The image is too large.",
  request_too_large: "The upload is too large.",
  text_too_long: "The text is too long.",
  empty_text: "Write something first.",
  not_audio: "That file is not audio this server can read.",
  unsupported_codec: "That audio format cannot be decoded here.",
  not_an_image: "That file is not an image this server can read.",
  unsupported_image_format: "That image format is not accepted.",
  network: "Could not reach the Emotune server. Is it running?",
  recommender_unavailable: "Music recommendation is not set up on this server.",
  timeout: "The server took too long to answer.",
};

function sentence(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the page: ${err && err.message ? err.message : err}.`;
  const detail = capitalise(err.message.replace(/[.\s]+$/, "")) + ".";
  if (err.status === 401) return `This server needs an API key: enter it at the top of the page. ${detail}`;
  if (err.status === 429) return `The server is busy or you sent many requests in a row; wait a moment and try again. ${detail}`;
  const lead = LEADS[err.code];
  if (lead) return `${lead} ${detail}`;
  if (err.status === 503) {
    return `The emotion service is unavailable right now (503): the inference server is down or still loading its models. ${detail}`;
  }
  return detail;
}

function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

// --- small DOM helpers -----------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const percent = (p) => `${Math.round(p * 100)}%`;

function showError(card, message) {
  const box = card.querySelector(".error");
  box.textContent = message || "";
  box.hidden = !message;
}

/** Run a request for a card: spinner on, its buttons disabled, errors shown as a sentence in the card. */
async function busy(card, work) {
  const spinner = card.querySelector(".spinner");
  const buttons = [...card.querySelectorAll("button:not(.stop)")];
  const wasDisabled = buttons.map((b) => b.disabled);
  showError(card, "");
  card.setAttribute("aria-busy", "true");
  if (spinner) spinner.hidden = false;
  buttons.forEach((b) => { b.disabled = true; });
  try {
    return await work();
  } catch (err) {
    showError(card, sentence(err));
    return undefined;
  } finally {
    card.removeAttribute("aria-busy");
    if (spinner) spinner.hidden = true;
    buttons.forEach((b, i) => { b.disabled = wasDisabled[i]; });
  }
}

function headline(emotion, confidence, prefix = "") {
  return el("p", { class: "headline" },
    el("span", { class: "emoji", "aria-hidden": "true", text: EMOJI[emotion] || "🎵" }), " ",
    prefix, el("strong", { class: "emotion", text: emotion }), " ",
    el("span", { class: "confidence", text: `${percent(confidence)} sure` }));
}

function bars(scores, label) {
  const rows = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  return el("ul", { class: "bars", "aria-label": label },
    rows.map(([name, p]) => el("li", { class: "bar" },
      el("span", { class: "bar-label", text: name }),
      el("span", { class: "bar-track", "aria-hidden": "true" }, el("span", { class: "bar-fill", style: { width: percent(p) } })),
      el("span", { class: "bar-value", text: percent(p) }))));
}

// --- text ----------------------------------------------------------------------------------------------------

function renderText(result) {
  $("text-result").replaceChildren(headline(result.emotion, result.confidence), bars(result.scores, "Text emotion scores"));
}

async function analyseText(event) {
  event.preventDefault();
  const card = $("text-card");
  const text = $("text-input").value;
  if (!text.trim()) {
    showError(card, LEADS.empty_text);
    return;
  }
  const result = await busy(card, () => api("text_emotion?recommend=false", { json: { text } }));
  if (!result) return;
  renderText(result);
  await loadMusic(result.emotion, "your text");
}

// --- voice ---------------------------------------------------------------------------------------------------

function setAudio(blob, name) {
  state.audio = { blob, name };
  const player = $("audio-playback");
  if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
  player.dataset.url = URL.createObjectURL(blob);
  player.src = player.dataset.url;
  player.hidden = false;
  updateHave();
}

function renderVoice(result) {
  const parts = [headline(result.emotion, result.confidence), bars(result.scores, "Voice emotion scores")];
  if (result.duration !== undefined) parts.push(el("p", { class: "meta", text: `${result.duration.toFixed(1)} s of audio` }));
  if (result.timeline && result.timeline.length > 1) {
    parts.push(el("ol", { class: "timeline", "aria-label": "Emotion per 3-second window" },
      result.timeline.map((w) => el("li", { title: `${w.start.toFixed(1)}–${w.end.toFixed(1)} s: ${w.emotion} ${percent(w.confidence)}` },
        el("span", { class: "when", text: `${w.start.toFixed(0)}–${w.end.toFixed(0)} s` }), " ", el("span", { text: w.emotion })))));
  }
  $("voice-result").replaceChildren(...parts);
}

async function analyseVoice() {
  if (!state.audio) return;
  const card = $("voice-card");
  const form = new FormData();
  form.append("file", state.audio.blob, state.audio.name);
  const result = await busy(card, () => api("speech_emotion?recommend=false", { form }));
  if (!result) return;
  renderVoice(result);
  await loadMusic(result.emotion, "your voice");
}

function recordingType() {
  const wanted = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
  return wanted.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

async function startRecording() {
  const card = $("voice-card");
  showError(card, "");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    showError(card, "This browser cannot record audio here; upload a file instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    showError(card, deviceProblem(err, "microphone"));
    return;
  }
  const type = recordingType();
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = Date.now();
  const limitS = Math.max(1, Math.min(state.config.max_audio_seconds, 30) - 0.5);
  recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    clearInterval(recorder.tick);
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    $("record-start").hidden = false;
    $("record-stop").hidden = true;
    $("record-timer").textContent = "";
    const mime = recorder.mimeType || type || "audio/webm";
    const ext = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
    const blob = new Blob(chunks, { type: mime });
    if (!blob.size) {
      showError(card, "The recording came out empty; try again or upload a file.");
      return;
    }
    setAudio(blob, `recording.${ext}`);
    analyseVoice();
  };
  recorder.tick = setInterval(() => {
    const seconds = (Date.now() - started) / 1000;
    $("record-timer").textContent = `Recording… ${seconds.toFixed(0)} s (stops by itself at ${limitS.toFixed(0)} s)`;
    if (seconds >= limitS && recorder.state === "recording") recorder.stop();
  }, 250);
  state.recorder = recorder;
  recorder.start();
  $("record-start").hidden = true;
  $("record-stop").hidden = false;
  $("record-stop").focus();
  $("record-timer").textContent = "Recording… 0 s";
}

function stopRecording() {
  if (state.recorder && state.recorder.state === "recording") state.recorder.stop();
}

function deviceProblem(err, device) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return `The ${device} is blocked: allow it for this page in the browser's site settings (or upload a file instead).`;
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return `No ${device} was found on this device; upload a file instead.`;
  if (name === "NotReadableError") return `The ${device} is in use by another program; close it and try again.`;
  return `The ${device} could not be started (${name || err}).`;
}

// --- face ----------------------------------------------------------------------------------------------------

function setImage(blob, name) {
  state.image = { blob, name };
  updateHave();
}

function drawBoxes(container, answer) {
  container.replaceChildren(...(answer ? answer.faces : []).map((face, i) => {
    const b = face.box;
    return el("div", {
      class: (b.x + b.width / 2) / answer.width > 0.6 ? "box right" : "box", // labels of faces near the right edge open leftwards
      style: { left: percent(b.x / answer.width), top: percent(b.y / answer.height),
        width: percent(b.width / answer.width), height: percent(b.height / answer.height) },
    }, el("span", { class: "box-label", text: `${answer.faces.length > 1 ? `${i + 1} · ` : ""}${face.emotion} ${percent(face.confidence)}` }));
  }));
}

function showStill(blob) {
  const img = $("face-image");
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  img.dataset.url = URL.createObjectURL(blob);
  img.src = img.dataset.url;
  img.hidden = false;
  $("face-stage").hidden = false;
  $("camera-video").hidden = true;
  $("face-boxes").replaceChildren();
  $("camera-resume").hidden = !state.stream;
}

function showVideo() {
  $("camera-video").hidden = false;
  $("face-image").hidden = true;
  $("face-boxes").replaceChildren();
  $("face-stage").hidden = false;
  $("camera-resume").hidden = true;
}

function renderFaces(answer) {
  drawBoxes($("face-boxes"), answer);
  const faces = answer.faces;
  const parts = [headline(answer.emotion, answer.confidence, faces.length > 1 ? "largest face: " : ""),
    bars(answer.scores, "Face emotion scores")];
  if (faces.length > 1) {
    parts.push(el("ol", { class: "faces", "aria-label": `${faces.length} faces, largest first` },
      faces.map((f, i) => el("li", {},
        el("details", {}, el("summary", { text: `Face ${i + 1}: ${f.emotion} (${percent(f.confidence)})` }),
          bars(f.scores, `Face ${i + 1} scores`))))));
  }
  $("face-result").replaceChildren(...parts);
}

async function analyseImage(blob, name) {
  setImage(blob, name);
  showStill(blob);
  const card = $("face-card");
  const form = new FormData();
  form.append("file", blob, name);
  const answer = await busy(card, () => api("facial_emotion?recommend=false", { form }));
  if (!answer) {
    $("face-result").replaceChildren();
    return;
  }
  renderFaces(answer);
  await loadMusic(answer.emotion, "your face");
}

async function startCamera() {
  const card = $("face-card");
  showError(card, "");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError(card, "This browser cannot use a camera here; upload a photo instead.");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" } });
  } catch (err) {
    showError(card, deviceProblem(err, "camera"));
    return;
  }
  const video = $("camera-video");
  video.srcObject = state.stream;
  await video.play().catch(() => undefined);
  showVideo();
  for (const id of ["camera-snapshot", "live-start", "camera-stop"]) $(id).hidden = false;
  $("camera-start").hidden = true;
  $("camera-snapshot").focus();
}

function stopCamera() {
  stopLive();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  const video = $("camera-video");
  video.srcObject = null;
  video.hidden = true;
  for (const id of ["camera-snapshot", "live-start", "live-stop", "camera-stop", "camera-resume"]) $(id).hidden = true;
  $("camera-start").hidden = false;
  if ($("face-image").hidden) $("face-stage").hidden = true;
}

async function frame() {
  const video = $("camera-video");
  if (!video.videoWidth) await new Promise((resolve) => video.addEventListener("loadeddata", resolve, { once: true }));
  const canvas = el("canvas", { width: video.videoWidth, height: video.videoHeight });
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
}

async function snapshot() {
  if (!state.stream) return;
  stopLive();
  const blob = await frame();
  await analyseImage(blob, "snapshot.jpg");
}

function smoothed(history) {
  const sum = {};
  for (const scores of history) for (const [k, v] of Object.entries(scores)) sum[k] = (sum[k] || 0) + v / history.length;
  const [emotion, confidence] = Object.entries(sum).sort((a, b) => b[1] - a[1])[0];
  return { emotion, confidence, scores: sum };
}

async function startLive() {
  if (!state.stream || state.live) return;
  const card = $("face-card");
  showError(card, "");
  state.live = true;
  showVideo();
  $("live-start").hidden = true;
  $("live-stop").hidden = false;
  $("live-stop").focus();
  const status = $("live-status");
  status.hidden = false;
  status.textContent = "Live: looking for a face…";
  const history = [];
  const imageBefore = state.image;
  let lastFace = null;
  while (state.live) {
    const started = performance.now();
    const blob = await frame();
    const form = new FormData();
    form.append("file", blob, "frame.jpg");
    try {
      const answer = await api("facial_emotion?recommend=false", { form });
      if (!state.live) break;
      drawBoxes($("face-boxes"), answer);
      history.push(answer.scores);
      if (history.length > LIVE_SMOOTHING) history.shift();
      const mood = smoothed(history);
      lastFace = { blob, mood };
      status.textContent = `Live: ${mood.emotion} (${percent(mood.confidence)}, over the last ${history.length} frames)` +
        (answer.faces.length > 1 ? `; ${answer.faces.length} faces` : "");
      $("face-result").replaceChildren(headline(mood.emotion, mood.confidence, "live, smoothed: "),
        bars(mood.scores, "Face emotion scores, smoothed"));
    } catch (err) {
      if (!state.live) break;
      if (err instanceof ApiError && err.code === "no_face") {
        $("face-boxes").replaceChildren();
        status.textContent = "Live: no face in view.";
      } else if (err instanceof ApiError && err.status === 429) {
        status.textContent = "Live: the server asked to slow down; the next frame waits a second.";
        await new Promise((resolve) => setTimeout(resolve, 1000));
      } else {
        showError(card, sentence(err));
        break;
      }
    }
    const wait = LIVE_INTERVAL_MS - (performance.now() - started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  state.live = false;
  $("live-stop").hidden = true;
  $("live-start").hidden = !state.stream;
  status.textContent = lastFace ? `Live mode stopped; last mood: ${lastFace.mood.emotion}.` : "Live mode stopped.";
  if (lastFace && state.image === imageBefore) { // unless a snapshot or an upload came in meanwhile
    setImage(lastFace.blob, "live-frame.jpg");
    await loadMusic(lastFace.mood.emotion, "your face (live)");
  }
}

function stopLive() {
  state.live = false;
}

// --- together --------------------------------------------------------------------------------------------------

function updateHave() {
  $("have-text").textContent = $("text-input").value.trim() ? "(written)" : "(none yet)";
  $("have-audio").textContent = state.audio ? `(${state.audio.name})` : "(none yet)";
  $("have-image").textContent = state.image ? `(${state.image.name})` : "(none yet)";
}

function renderTogether(body) {
  const names = Object.keys(body.modalities);
  const parts = [headline(body.emotion, body.confidence, "together: ")];
  if (names.length > 1) {
    const said = names.map((m) => `${MODALITY_NAMES[m] || m} says ${body.modalities[m].emotion}`).join(", ");
    parts.push(body.fusion.agreement
      ? el("p", { class: "agreement agree", text: `All ${names.length} agree (${said}).` })
      : el("p", { class: "agreement disagree", role: "note",
        text: `They disagree: ${said}. The fused answer weighs each by its confidence.` }));
  }
  parts.push(el("table", { class: "modalities" },
    el("caption", { text: "Each input's own answer and its share of the vote" }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Input" }), el("th", { scope: "col", text: "Its emotion" }),
      el("th", { scope: "col", text: "Weight" }))),
    el("tbody", {}, names.map((m) => {
      const r = body.modalities[m];
      const w = body.fusion.weights[m] || 0;
      return el("tr", { "data-modality": m },
        el("th", { scope: "row", text: MODALITY_NAMES[m] || m }),
        el("td", { text: `${r.emotion} (${percent(r.confidence)})` }),
        el("td", {}, el("span", { class: "weight", style: { width: percent(w) }, "aria-hidden": "true" }), ` ${percent(w)}`));
    }))));
  parts.push(bars(body.fusion.scores, "Fused emotion scores"));
  $("together-result").replaceChildren(...parts);
}

async function together() {
  const card = $("together-card");
  const form = new FormData();
  const text = $("text-input").value;
  if ($("use-text").checked && text.trim()) form.append("text", text);
  if ($("use-audio").checked && state.audio) form.append("audio", state.audio.blob, state.audio.name);
  if ($("use-image").checked && state.image) form.append("image", state.image.blob, state.image.name);
  if (![...form.keys()].length) {
    showError(card, "Give at least one input above first: write a text, record or upload your voice, or take or upload a photo.");
    return;
  }
  const { strategy, limit } = musicOptions();
  form.append("strategy", strategy);
  form.append("limit", String(limit));
  const body = await busy(card, () => api("recommend", { form }));
  if (!body) return;
  renderTogether(body);
  const m = body.modalities;
  if (m.text) renderText(m.text);
  if (m.speech) renderVoice(m.speech);
  if (m.face) {
    showStill(state.image.blob);
    renderFaces(m.face);
  }
  showMusic({ mood: body.mood, emotion: body.emotion, source: "everything together", strategy: body.strategy, limit,
    tracks: body.recommendations, enrichment: body.enrichment });
}

// --- music -----------------------------------------------------------------------------------------------------

function musicOptions() {
  const strategy = document.querySelector('input[name="strategy"]:checked').value;
  const top = state.config.max_recommendation_limit;
  const limit = Math.max(1, Math.min(top, parseInt($("limit").value, 10) || state.config.recommendation_limit));
  $("limit").value = String(limit);
  return { strategy, limit };
}

async function loadMusic(emotion, source, shown = emotion) {
  const card = $("music");
  const { strategy, limit } = musicOptions();
  const body = await busy(card, () => api("music_recommendation", { json: { emotion, limit, strategy } }));
  if (!body) return;
  showMusic({ mood: body.mood, emotion: shown, source, strategy, limit, tracks: body.recommendations, enrichment: body.enrichment });
}

function featureChart(features) {
  const known = Object.keys(FEATURE_BARS).filter((f) => typeof features[f] === "number");
  const summary = known.map((f) => `${f} ${percent(features[f])}`).join(", ") +
    (typeof features.tempo === "number" ? `, tempo ${Math.round(features.tempo)} BPM` : "");
  return el("div", { class: "features", title: summary },
    el("span", { class: "sr-only", text: `Audio features: ${summary}` }),
    el("ul", { class: "feature-bars", "aria-hidden": "true" },
      known.map((f) => el("li", {}, el("span", { class: "f-name", text: FEATURE_BARS[f] }),
        el("span", { class: "f-track" }, el("span", { class: `f-fill f-${f}`, style: { width: percent(features[f]) } }))))),
    typeof features.tempo === "number" ? el("span", { class: "tempo", "aria-hidden": "true", text: `${Math.round(features.tempo)} BPM` }) : null);
}

function trackItem(track) {
  const placeholder = () => el("div", { class: "art placeholder", "aria-hidden": "true", text: (track.name || "?").trim()[0] || "♪" });
  let art = placeholder();
  if (track.image_url) {
    art = el("img", { class: "art", src: track.image_url, alt: `Album art for ${track.name}`, width: 64, height: 64, loading: "lazy" });
    art.addEventListener("error", () => art.replaceWith(placeholder()), { once: true });
  }
  const meta = [track.artist, track.album, track.year].filter(Boolean).join(" · ");
  return el("li", { class: "track" },
    art,
    el("div", { class: "track-body" },
      el("p", { class: "track-name" }, el("strong", { text: track.name })),
      el("p", { class: "track-meta", text: meta }),
      track.reason ? el("p", { class: "reason", text: track.reason }) : null,
      track.features ? featureChart(track.features) : null,
      el("div", { class: "track-links" },
        track.external_url ? el("a", { href: track.external_url, target: "_blank", rel: "noopener noreferrer",
          "aria-label": `Open ${track.name} by ${track.artist} in Spotify`, text: "Open in Spotify" }) : null,
        track.preview_url ? el("span", { class: "preview-label", "aria-hidden": "true", text: "30-s preview" }) : null,
        track.preview_url ? el("audio", { controls: true, preload: "none", src: track.preview_url,
          "aria-label": `30-second preview of ${track.name}` }) : null)));
}

function showMusic(music) {
  state.music = music;
  const how = music.strategy === "uplift" ? "starting there and lifting the mood" : "matching the mood";
  const moodNote = music.mood && music.mood !== music.emotion ? ` (music chosen for “${music.mood}”)` : "";
  $("music-for").textContent = music.tracks.length
    ? `${music.tracks.length} tracks for ${music.emotion}${moodNote}, from ${music.source}, ${how}.`
    : `No track in the catalog fits ${music.emotion}.`;
  const enrichment = music.enrichment || {};
  const note = $("enrichment-note");
  note.hidden = !enrichment.status || enrichment.status === "ok";
  note.textContent = enrichment.message ? `Spotify details: ${enrichment.message}.` : "";
  $("tracks").replaceChildren(...music.tracks.map(trackItem));
  $("download-m3u").disabled = !music.tracks.length;
  $("download-json").disabled = !music.tracks.length;
  $("playlist-save").disabled = !(state.config.playlist.enabled && music.tracks.length);
  $("playlist-note").textContent = state.config.playlist.enabled ? "" : `Playlist button off: ${state.config.playlist.message}.`;
}

function listName() {
  const m = state.music;
  return `emotune-${m.mood || m.emotion}-${m.strategy}`.replace(/[^\w.-]+/g, "_");
}

function download(filename, type, content) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function m3u(music) {
  const lines = ["#EXTM3U", `#PLAYLIST:Emotune: ${music.mood || music.emotion} (${music.strategy})`];
  for (const t of music.tracks) {
    const seconds = t.duration_ms ? Math.round(t.duration_ms / 1000) : -1;
    lines.push(`#EXTINF:${seconds},${t.artist} - ${t.name}`.replace(/[\r\n]+/g, " "), t.external_url || t.uri);
  }
  return lines.join("\n") + "\n";
}

async function savePlaylist() {
  const music = state.music;
  if (!music) return;
  const card = $("music");
  const name = `Emotune: ${music.mood || music.emotion} (${music.strategy})`;
  const body = await busy(card, () => api("music_recommendation",
    { json: { emotion: music.mood || music.emotion, limit: music.limit, strategy: music.strategy, playlist: name } }));
  if (!body) return;
  const result = body.playlist || {};
  const note = $("playlist-note");
  if (result.status === "created" && result.url) {
    note.replaceChildren(`Saved “${name}” (${result.tracks} tracks): `,
      el("a", { href: result.url, target: "_blank", rel: "noopener noreferrer", text: "open the playlist in Spotify" }), ".");
  } else {
    note.textContent = `The playlist was not saved: ${result.message || "Spotify did not say why"}.`;
  }
}

function refreshMusic() {
  const m = state.music;
  if (m) loadMusic(m.mood || m.emotion, m.source, m.emotion);
}

// --- start -----------------------------------------------------------------------------------------------------

async function checkServer() {
  const status = $("server-status");
  try {
    const ready = await api("readyz", { method: "GET" });
    status.textContent = `Ready: ${Object.keys(ready.models || {}).length} models served (${ready.backend}).`;
    status.className = "status ok";
  } catch (err) {
    status.textContent = sentence(err);
    status.className = "status bad";
  }
}

async function loadConfig() {
  try {
    Object.assign(state.config, await api("ui/config", { method: "GET" }));
  } catch (_) {
    return; // the defaults above; every request reports its own errors
  }
  const limit = $("limit");
  limit.max = String(state.config.max_recommendation_limit);
  limit.value = String(state.config.recommendation_limit);
  $("text-input").maxLength = state.config.max_text_chars || 5000;
  if (state.config.api_key_required) $("key-form").hidden = false;
  $("playlist-note").textContent = state.config.playlist.enabled ? "" : `Playlist button off: ${state.config.playlist.message}.`;
}

function pageError(message) {
  const status = $("server-status");
  status.textContent = message;
  status.className = "status bad";
}

function start() {
  $("server-host").textContent = location.host;
  window.addEventListener("error", (e) => { pageError(sentence(e.error || e.message)); e.preventDefault(); });
  window.addEventListener("unhandledrejection", (e) => { pageError(sentence(e.reason)); e.preventDefault(); });

  $("text-form").addEventListener("submit", analyseText);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem("emotune-api-key", key);
    else sessionStorage.removeItem("emotune-api-key");
    checkServer();
  });
  $("text-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("text-form").requestSubmit();
  });
  $("text-input").addEventListener("input", updateHave);
  $("record-start").addEventListener("click", startRecording);
  $("record-stop").addEventListener("click", stopRecording);
  $("audio-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    if (file.size > state.config.max_upload_bytes) {
      showError($("voice-card"), `${LEADS.file_too_large} It has ${file.size} bytes; the limit is ${state.config.max_upload_bytes}.`);
      return;
    }
    setAudio(file, file.name);
    analyseVoice();
  });
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("camera-resume").addEventListener("click", showVideo);
  $("camera-snapshot").addEventListener("click", snapshot);
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  $("image-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    if (file.size > state.config.max_upload_bytes) {
      showError($("face-card"), `${LEADS.file_too_large} It has ${file.size} bytes; the limit is ${state.config.max_upload_bytes}.`);
      return;
    }
    stopLive();
    analyseImage(file, file.name);
  });
  $("together-go").addEventListener("click", together);
  document.querySelectorAll('input[name="strategy"]').forEach((r) => r.addEventListener("change", refreshMusic));
  $("limit").addEventListener("change", refreshMusic);
  $("download-m3u").addEventListener("click", () => download(`${listName()}.m3u`, "audio/x-mpegurl", m3u(state.music)));
  $("download-json").addEventListener("click", () => download(`${listName()}.json`, "application/json",
    JSON.stringify({ emotion: state.music.emotion, mood: state.music.mood, strategy: state.music.strategy, source: state.music.source,
      tracks: state.music.tracks }, null, 2)));
  $("playlist-save").addEventListener("click", savePlaylist);
  window.addEventListener("pagehide", () => { stopRecording(); stopCamera(); });
  updateHave();
  loadConfig();
  checkServer();
}

document.addEventListener("DOMContentLoaded", start);
