// The page: a photo, a mask painted over it, the settings, and a run whose server-sent events
// drive the progress bar, the previews and the result. Plain JavaScript, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const photo = $("photo");
const mask = $("mask");
const maskCtx = mask.getContext("2d");
// The mask is held in the mask canvas's alpha (opaque = hole); this colour only shows it.
const TINT = "rgb(255, 255, 255)";
const UNDO_DEPTH = 30;

const state = { file: null, offer: null, run: null, undo: [], stroke: null };

function showError(message) {
  $("error").textContent = message || "";
}

function setStatus(text) {
  $("status").textContent = text;
}

// --- The offer: methods, schedulers, SR ---------------------------------------------------

async function loadOffer() {
  const response = await fetch("/api/info");
  const offer = await response.json();
  state.offer = offer;
  $("model").textContent = offer.model;
  for (const name of offer.methods) {
    $("method").append(new Option(name, name));
  }
  for (const name of offer.schedulers) {
    $("scheduler").append(new Option(name, name));
  }
  $("preview-every").placeholder = String(offer.preview_every);
  $("sr").disabled = !offer.sr;
  if (!offer.sr) $("sr").parentElement.title = "start the server with --sr-model";
}

async function pollQueue() {
  try {
    const status = await (await fetch("/api/status")).json();
    const busy = status.running === null ? "idle" : "1 running";
    $("queue").textContent = `${busy}, ${status.waiting.length} waiting`;
  } catch (e) {
    $("queue").textContent = "server unreachable";
  }
}

// --- The photo ------------------------------------------------------------------------------

function openPhoto(file) {
  if (!file) return;
  showError("");
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    const limit = state.offer ? state.offer.limits.max_side : Infinity;
    if (img.naturalWidth > limit || img.naturalHeight > limit) {
      showError(`${file.name} is ${img.naturalWidth}x${img.naturalHeight}; the largest side accepted is ${limit} px`);
      URL.revokeObjectURL(url);
      return;
    }
    const upload = state.offer ? state.offer.limits.max_upload_bytes : Infinity;
    if (file.size > upload) {
      const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
      showError(`${file.name} is ${mib(file.size)} MiB; the server takes uploads up to ${mib(upload)} MiB`);
      URL.revokeObjectURL(url);
      return;
    }
    state.file = file;
    for (const canvas of [photo, mask]) {
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
    }
    photo.getContext("2d").drawImage(img, 0, 0);
    maskCtx.clearRect(0, 0, mask.width, mask.height);
    state.undo = [];
    $("stage").classList.remove("empty");
    $("run").disabled = false;
    setStatus(`${file.name}: ${img.naturalWidth}x${img.naturalHeight}. Paint over what to replace.`);
    URL.revokeObjectURL(url);
  };
  img.onerror = () => {
    showError(`${file.name} is not an image this browser can read`);
    URL.revokeObjectURL(url);
  };
  img.src = url;
}

$("image-file").addEventListener("change", (e) => openPhoto(e.target.files[0]));
const stage = $("stage");
stage.addEventListener("dragover", (e) => {
  e.preventDefault();
  stage.classList.add("dragging");
});
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (e) => {
  e.preventDefault();
  stage.classList.remove("dragging");
  openPhoto(e.dataTransfer.files[0]);
});

// --- The mask -------------------------------------------------------------------------------

function remember() {
  state.undo.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  if (state.undo.length > UNDO_DEPTH) state.undo.shift();
}

// The pointer's position in image pixels, and the brush's width in image pixels (the slider is
// in screen pixels, so that the brush looks the same at any zoom).
function toImage(e) {
  const rect = mask.getBoundingClientRect();
  const scale = mask.width / rect.width;
  return { x: (e.clientX - rect.left) * scale, y: (e.clientY - rect.top) * scale, scale };
}

function paint(from, to) {
  maskCtx.globalCompositeOperation = $("erase").checked ? "destination-out" : "source-over";
  maskCtx.strokeStyle = TINT;
  maskCtx.fillStyle = TINT;
  maskCtx.lineCap = "round";
  maskCtx.lineJoin = "round";
  maskCtx.lineWidth = Number($("brush").value) * to.scale;
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x, to.y);
  maskCtx.stroke();
}

mask.addEventListener("pointerdown", (e) => {
  if (!state.file) return;
  mask.setPointerCapture(e.pointerId);
  remember();
  const at = toImage(e);
  state.stroke = at;
  paint(at, at);
});
mask.addEventListener("pointermove", (e) => {
  if (!state.stroke) return;
  const at = toImage(e);
  paint(state.stroke, at);
  state.stroke = at;
});
for (const end of ["pointerup", "pointercancel"]) {
  mask.addEventListener(end, () => (state.stroke = null));
}

$("brush").addEventListener("input", () => ($("brush-size").textContent = $("brush").value));
$("undo").addEventListener("click", () => {
  const last = state.undo.pop();
  if (last) maskCtx.putImageData(last, 0, 0);
});
$("clear").addEventListener("click", () => {
  remember();
  maskCtx.clearRect(0, 0, mask.width, mask.height);
});
$("invert").addEventListener("click", () => {
  remember();
  const data = maskCtx.getImageData(0, 0, mask.width, mask.height);
  setAlpha(data, (i, px) => 255 - px[i + 3]);
  maskCtx.putImageData(data, 0, 0);
});
$("toggle-mask").addEventListener("click", () => {
  const hidden = mask.classList.toggle("hidden");
  $("toggle-mask").textContent = hidden ? "Show mask" : "Hide mask";
});

// Rewrites every pixel as the tint with the alpha `alphaOf(i, pixels)` gives.
function setAlpha(data, alphaOf) {
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const a = alphaOf(i, px);
    px[i] = px[i + 1] = px[i + 2] = 255;
    px[i + 3] = a;
  }
}

// A mask file (white = hole) scaled onto the photo.
$("mask-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file || !state.file) {
    if (!state.file) showError("open a photo first");
    return;
  }
  const img = new Image();
  const url = URL.createObjectURL(file);
  img.onload = () => {
    remember();
    const scratch = document.createElement("canvas");
    scratch.width = mask.width;
    scratch.height = mask.height;
    const ctx = scratch.getContext("2d");
    ctx.drawImage(img, 0, 0, mask.width, mask.height);
    const data = ctx.getImageData(0, 0, mask.width, mask.height);
    setAlpha(data, (i, px) => Math.round(0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]));
    maskCtx.putImageData(data, 0, 0);
    URL.revokeObjectURL(url);
  };
  img.onerror = () => showError(`${file.name} is not an image this browser can read`);
  img.src = url;
});

// The mask as the server reads it: a grey PNG at the photo's size, white where painted.
function maskPng() {
  const out = document.createElement("canvas");
  out.width = mask.width;
  out.height = mask.height;
  const ctx = out.getContext("2d");
  const data = maskCtx.getImageData(0, 0, mask.width, mask.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i + 3];
    px[i] = px[i + 1] = px[i + 2] = v;
    px[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// --- The run --------------------------------------------------------------------------------

function number(id) {
  const text = $(id).value.trim();
  return text === "" ? undefined : Number(text);
}

function settings() {
  const s = {
    prompt: $("prompt").value,
    method: $("method").value || undefined,
    seed: number("seed"),
    steps: number("steps"),
    guidance: number("guidance"),
    num_images: number("num-images") ?? 1,
    mask_blur: number("blur") ?? 0,
    grow: number("grow") ?? 0,
    preview_every: number("preview-every"),
    scheduler: $("scheduler").value || undefined,
    karras: $("karras").checked,
    soft_mask: $("soft").checked,
    sr: $("sr").checked,
  };
  const negative = $("negative").value;
  if (negative !== "") s.negative_prompt = negative;
  if ($("crop").checked) {
    s.crop_to_mask = number("crop-padding") ?? 32;
    const size = $("crop-size").value.trim().match(/^(\d+)\s*x\s*(\d+)$/);
    if (size) s.crop_size = [Number(size[1]), Number(size[2])];
  }
  return s;
}

function running(on) {
  $("run").disabled = on || !state.file;
  $("cancel").disabled = !on;
}

async function run() {
  showError("");
  $("results").replaceChildren();
  $("preview-box").hidden = true;
  $("progress").value = 0;
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  form.append("mask", await maskPng(), "mask.png");
  form.append("settings", JSON.stringify(settings()));
  running(true);
  setStatus("uploading");
  state.run = { id: null, started: Date.now() };
  try {
    const response = await fetch("/api/runs", { method: "POST", body: form });
    if (!response.ok) {
      const body = await response.json().catch(() => ({ error: response.statusText }));
      throw new Error(`${response.status}: ${body.error}`);
    }
    await readEvents(response.body, handle);
  } catch (e) {
    showError(e.message);
    setStatus("not run");
  } finally {
    running(false);
    state.run = null;
  }
}

// Parses a text/event-stream body, calling `onEvent(name, data)` for each event.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function handle(name, data) {
  switch (name) {
    case "accepted":
      state.run.id = data.id;
      break;
    case "queued":
      setStatus(`queued: position ${data.position}`);
      break;
    case "started":
      setStatus(`running (seed ${data.seeds.join(", ")})`);
      break;
    case "progress":
      $("progress").value = data.done / data.total;
      setStatus(`${data.stage}: step ${data.step}/${data.steps} (${data.done}/${data.total} in all)`);
      break;
    case "preview":
      $("preview-box").hidden = false;
      $("preview").src = data.url;
      $("preview-caption").textContent = `preview at step ${data.step}`;
      break;
    case "warning":
      showError(data.message);
      break;
    case "done":
      $("progress").value = 1;
      showResults(data);
      setStatus(`done in ${data.seconds.toFixed(1)} s`);
      break;
    case "failed":
      showError(data.error);
      setStatus("failed");
      break;
    case "cancelled":
      setStatus("cancelled");
      break;
  }
}

function showResults(done) {
  const list = $("results");
  done.images.forEach((url, k) => {
    const seed = done.seeds[k];
    const figure = document.createElement("figure");
    figure.className = "result";
    const img = document.createElement("img");
    img.src = url;
    img.alt = `result, seed ${seed}`;
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    link.href = url;
    link.download = `hd-painter-seed-${seed}.png`;
    link.textContent = "Download";
    caption.append(`seed ${seed} · `, link);
    figure.append(img, caption);
    list.append(figure);
  });
}

$("run").addEventListener("click", run);
$("cancel").addEventListener("click", async () => {
  if (!state.run || state.run.id === null) return;
  setStatus("cancelling after the current step");
  await fetch(`/api/runs/${state.run.id}/cancel`, { method: "POST" });
});

loadOffer().catch((e) => showError(`cannot reach the server: ${e.message}`));
pollQueue();
setInterval(pollQueue, 2000);
