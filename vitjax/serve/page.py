"""The page `vitjax serve` answers at `GET /`: drop or pick images, see what the model says.

One self-contained HTML document (inline CSS and JavaScript, no external assets). It asks `/metadata`
for the task and its class names and posts the images to `/predict`, then draws each record by its
shape, whatever the task: `top_k` as bars with labels (and a multi-label record's `labels`), a `mask`
(a class index per pixel) as a coloured overlay on the image with a legend of the classes it holds
(click one to show or hide its colour, e.g. the background's),
`detections` as boxes drawn on the image; any other field as JSON. With an API key the page sends
the key typed into it as `Authorization: Bearer <key>`; the key is kept in the input field only
(never stored by the page, never in a URL).
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vitjax serve</title>
<style>
  :root { --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; --accent: #2f6fde; --bg: #f6f7fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
         background: var(--bg); }
  header { display: flex; gap: 1em; align-items: baseline; padding: .8em 1.4em; background: #fff;
           border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 1.25em; }
  #model { color: var(--muted); }
  main { max-width: 1100px; margin: 0 auto; padding: 1.2em; }
  #controls { display: flex; flex-wrap: wrap; gap: 1em; align-items: end; margin-bottom: 1em; }
  label { display: flex; flex-direction: column; font-size: .85em; color: var(--muted); gap: .2em; }
  input[type=password], input[type=number] { font: inherit; padding: .35em .5em; border: 1px solid var(--line);
                                             border-radius: 6px; }
  #drop { flex: 1 1 100%; border: 2px dashed var(--line); border-radius: 10px; padding: 1.6em; text-align: center;
          background: #fff; color: var(--muted); cursor: pointer; }
  #drop.over { border-color: var(--accent); background: #eef3fd; }
  #files { display: none; }
  #status { min-height: 1.4em; margin: .2em 0 1em; }
  #status.error { color: #b3261e; }
  #results { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1em; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: .9em; }
  .card h2 { font-size: .95em; margin: 0 0 .6em; word-break: break-all; }
  .card canvas, .card img { max-width: 100%; max-height: 260px; display: block; margin: 0 auto .6em;
                            image-rendering: pixelated; }
  .row { display: grid; grid-template-columns: minmax(5em, 9em) 1fr 3.6em; gap: .5em; align-items: center;
         margin: .2em 0; font-size: .9em; }
  .bar { height: .8em; background: #e6e9f0; border-radius: 4px; overflow: hidden; }
  .bar > span { display: block; height: 100%; background: var(--accent); }
  .row.chosen .label { font-weight: 600; }
  .num { text-align: right; color: var(--muted); font-variant-numeric: tabular-nums; }
  .legend { display: flex; flex-wrap: wrap; gap: .3em .9em; font-size: .85em; }
  .legend-entry { font: inherit; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
  .legend-entry.off { opacity: .5; text-decoration: line-through; }
  .legend .swatch { display: inline-block; width: .9em; height: .9em; border-radius: 2px; margin-right: .3em;
                    vertical-align: -.1em; border: 1px solid #0003; }
  pre { font-size: .8em; background: var(--bg); padding: .5em; overflow: auto; }
</style>
</head>
<body>
<header><h1>vitjax</h1><span id="model">model: not loaded yet</span></header>
<main>
  <section id="controls">
    <label>API key (if the server has one)
      <input id="key" type="password" autocomplete="off" spellcheck="false" placeholder="not stored"></label>
    <label>top k <input id="topk" type="number" min="1" value="5" style="width:5em"></label>
    <div id="drop" tabindex="0" role="button">Drop images here, or click to choose files</div>
    <input id="files" type="file" accept="image/*" multiple>
  </section>
  <p id="status" role="status"></p>
  <section id="results"></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let meta = null;

function headers() {
  const key = $("key").value.trim();
  return key ? { "Authorization": "Bearer " + key } : {};
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function detail(response) {
  try { const body = await response.json(); return body.detail || JSON.stringify(body); }
  catch (_) { return response.statusText; }
}

async function loadMeta() {
  const response = await fetch("/metadata", { headers: headers() });
  if (response.status === 401) throw new Error("This server needs an API key: type it above.");
  if (!response.ok) throw new Error(await detail(response));
  meta = await response.json();
  $("model").textContent = "task: " + meta.task + " \u00b7 " + meta.class_names.length + " classes";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

// A distinct colour per class index: golden-angle hues at saturation 0.7, lightness 0.5, as [r, g, b].
function colour(index) {
  const h = (index * 137.508) % 360 / 60, c = 0.7, x = c * (1 - Math.abs(h % 2 - 1)), m = 0.5 - c / 2;
  const rgb = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]][Math.floor(h) % 6];
  return rgb.map((v) => Math.round((v + m) * 255));
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot show this image"));
    image.src = src;
  });
}

function canvasOf(image) {
  const canvas = el("canvas");
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  canvas.getContext("2d").drawImage(image, 0, 0);
  return canvas;
}

function bars(record) {
  const box = el("div", { class: "topk" });
  const chosen = new Set(record.labels || [record.label]);
  for (const entry of record.top_k) {
    const percent = (100 * entry.probability).toFixed(1);
    box.append(el("div", { class: "row" + (chosen.has(entry.label) ? " chosen" : "") },
      el("span", { class: "label" }, entry.label),
      el("div", { class: "bar" }, el("span", { style: "width:" + percent + "%" })),
      el("span", { class: "num" }, percent + "%")));
  }
  if (record.labels) box.prepend(el("p", { class: "chosen-labels" },
    "labels: " + (record.labels.length ? record.labels.join(", ") : "(none at or above 0.5)")));
  return box;
}

async function overlay(image, maskPng) {
  const canvas = canvasOf(image), ctx = canvas.getContext("2d");
  const mask = await createImageBitmap(await (await fetch("data:image/png;base64," + maskPng)).blob(),
                                       { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const scratch = el("canvas"); scratch.width = canvas.width; scratch.height = canvas.height;
  const sctx = scratch.getContext("2d"); sctx.drawImage(mask, 0, 0, canvas.width, canvas.height);
  const classes = sctx.getImageData(0, 0, canvas.width, canvas.height).data;  // the class index in red
  const original = ctx.getImageData(0, 0, canvas.width, canvas.height), hidden = new Set(), counts = new Map();
  for (let i = 0; i < classes.length; i += 4) counts.set(classes[i], (counts.get(classes[i]) || 0) + 1);
  const paint = () => {  // each shown class's colour half over the image
    const out = new ImageData(new Uint8ClampedArray(original.data), canvas.width, canvas.height);
    for (let i = 0; i < classes.length; i += 4) {
      if (hidden.has(classes[i])) continue;
      const rgb = colour(classes[i]);
      for (let c = 0; c < 3; c++) out.data[i + c] = (out.data[i + c] + rgb[c]) / 2;
    }
    ctx.putImageData(out, 0, 0);
  };
  paint();
  const legend = el("div", { class: "legend", title: "click a class to show or hide its colour" });
  const total = canvas.width * canvas.height;
  for (const [index, count] of [...counts].sort((a, b) => b[1] - a[1])) {
    const name = meta.class_names[index] ?? "class " + index;
    const entry = el("button", { class: "legend-entry", type: "button" },
      el("span", { class: "swatch", style: "background:rgb(" + colour(index).join(",") + ")" }),
      el("span", { class: "label" }, name), " " + (100 * count / total).toFixed(1) + "%");
    entry.addEventListener("click", () => {
      hidden.has(index) ? hidden.delete(index) : hidden.add(index);
      entry.classList.toggle("off", hidden.has(index));
      paint();
    });
    legend.append(entry);
  }
  return [canvas, legend];
}

function boxes(image, detections) {
  const canvas = canvasOf(image), ctx = canvas.getContext("2d");
  const width = Math.max(2, Math.round(canvas.width / 200));
  ctx.lineWidth = width; ctx.font = (6 * width + 6) + "px system-ui, sans-serif"; ctx.textBaseline = "top";
  const list = el("div", { class: "detections" });
  detections.forEach((d) => {
    const [x0, y0, x1, y1] = d.box, rgb = "rgb(" + colour(meta.class_names.indexOf(d.label)).join(",") + ")";
    ctx.strokeStyle = rgb; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = d.label + " " + d.score.toFixed(2), w = ctx.measureText(text).width + 2 * width;
    ctx.fillStyle = rgb; ctx.fillRect(x0, y0, w, 6 * width + 6 + 2 * width);
    ctx.fillStyle = "#fff"; ctx.fillText(text, x0 + width, y0 + width);
    list.append(el("div", { class: "row" }, el("span", { class: "label" }, d.label),
      el("div", { class: "bar" }, el("span", { style: "width:" + (100 * d.score).toFixed(1) + "%;background:" + rgb })),
      el("span", { class: "num" }, d.score.toFixed(2))));
  });
  if (!detections.length) list.append(el("p", {}, "no detections above the score threshold"));
  return [canvas, list];
}

const SHOWN = new Set(["image", "label", "labels", "probability", "top_k", "mask", "overlay", "class_pixels",
                       "detections", "drawn"]);

async function card(record, file) {
  const node = el("article", { class: "card" }, el("h2", {}, record.image));
  const url = URL.createObjectURL(file);
  try {
    const image = await loadImage(url);
    if (record.mask) node.append(...await overlay(image, record.mask));
    else if (record.detections) node.append(...boxes(image, record.detections));
    else node.append(canvasOf(image));
  } catch (error) { node.append(el("p", {}, String(error.message))); }
  finally { URL.revokeObjectURL(url); }
  if (record.top_k) node.append(bars(record));
  const rest = Object.fromEntries(Object.entries(record).filter(([k]) => !SHOWN.has(k)));
  if (Object.keys(rest).length) node.append(el("pre", {}, JSON.stringify(rest, null, 2)));
  return node;
}

async function predict(files) {
  files = [...files].filter((f) => f.type.startsWith("image/") || !f.type);
  if (!files.length) return say("Drop or choose image files.", true);
  say("Asking the model about " + files.length + " image(s)\u2026");
  try {
    if (!meta) await loadMeta();
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const topk = encodeURIComponent($("topk").value || "5");
    const response = await fetch("/predict?top_k=" + topk, { method: "POST", body: form, headers: headers() });
    if (response.status === 401) throw new Error("Missing or wrong API key: type the server's key above.");
    if (!response.ok) throw new Error(response.status + ": " + await detail(response));
    const { predictions } = await response.json();
    const cards = await Promise.all(predictions.map((record, i) => card(record, files[i])));
    $("results").replaceChildren(...cards);
    say(predictions.length + " image(s) answered.");
  } catch (error) { say(error.message, true); }
}

$("drop").addEventListener("click", () => $("files").click());
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
$("files").addEventListener("change", (e) => { predict(e.target.files); e.target.value = ""; });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault(); $("drop").classList.remove("over"); predict(e.dataTransfer.files);
});
$("key").addEventListener("change", () => { meta = null; loadMeta().then(() => say(""), (e) => say(e.message, true)); });
loadMeta().catch((e) => say(e.message, true));
</script>
</body>
</html>
"""
