"""The reading page's script (plain JavaScript, no build step), served as ``/app.js``.

Flow: start page (reader id, token when required) -> one image at a time -> the answer is
POSTed and the next image is shown only after the server confirms it was committed. The
reader id is kept in ``localStorage`` so a reload resumes; "Stop" forgets it on this browser.
"""

from __future__ import annotations

JS = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const KEY = "htd-reader-study-reader";
const st = { reader: null, prog: null, image: null, call: null, quality: null, shownAt: 0,
  busy: false, z: 1, tx: 0, ty: 0, w: 0, h: 0 };

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try { resp = await fetch(path, opts); } catch (e) {
    return { ok: false, status: 0, data: { error: "cannot reach the server; your saved answers are safe, retry when it is back" } };
  }
  let data = {};
  try { data = await resp.json(); } catch (e) { /* empty */ }
  return { ok: resp.ok, status: resp.status, data };
}

function showOnly(id) {
  for (const s of ["login", "study", "done"]) $(s).hidden = s !== id;
}

function loginScreen(message, ok) {
  showOnly("login");
  $("login-msg").textContent = message || "";
  $("login-msg").className = ok ? "msg ok" : "msg";
  $("reader").focus();
}

function show(prog) {
  st.prog = prog;
  st.reader = prog.reader_id;
  const pct = prog.total ? (100 * prog.answered) / prog.total : 0;
  $("bar-fill").style.width = pct + "%";
  $("count").textContent = prog.answered + " / " + prog.total;
  $("who").textContent = prog.reader_id;
  if (prog.done) {
    showOnly("done");
    $("done-text").textContent = "You answered all " + prog.total + " images. Your answers are saved.";
    return;
  }
  showOnly("study");
  st.image = prog.next_image;
  st.call = null;
  st.quality = null;
  $("comment").value = "";
  $("msg").textContent = "";
  refresh();
  const img = $("img");
  img.style.visibility = "hidden";
  img.dataset.image = prog.next_image;
  img.src = "/image/" + encodeURIComponent(prog.next_image);
}

function refresh() {
  document.querySelectorAll("[data-call]").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.call === st.call)));
  document.querySelectorAll("[data-q]").forEach((b) =>
    b.setAttribute("aria-pressed", String(Number(b.dataset.q) === st.quality)));
  $("submit").disabled = st.busy || !st.call || !st.quality;
}

/* zoom and pan: the image is transformed inside the viewer */
function apply() {
  const img = $("img");
  img.style.transform = "translate(" + st.tx + "px," + st.ty + "px) scale(" + st.z + ")";
  img.classList.toggle("pixelated", st.z >= 4);  /* show true pixels up close */
  $("zoom-level").textContent = Math.round(st.z * 100) + "%";
}
function fit() {
  const v = $("viewer").getBoundingClientRect();
  if (!st.w) return;
  st.z = Math.min(v.width / st.w, v.height / st.h) * 0.98;
  st.tx = (v.width - st.w * st.z) / 2;
  st.ty = (v.height - st.h * st.z) / 2;
  apply();
}
function zoomAt(factor, cx, cy) {
  const v = $("viewer").getBoundingClientRect();
  if (cx === undefined) { cx = v.width / 2; cy = v.height / 2; }
  const z = Math.min(32, Math.max(0.05, st.z * factor));
  st.tx = cx - ((cx - st.tx) * z) / st.z;
  st.ty = cy - ((cy - st.ty) * z) / st.z;
  st.z = z;
  apply();
}
function oneToOne() {
  const v = $("viewer").getBoundingClientRect();
  zoomAt(1 / st.z / (window.devicePixelRatio || 1), v.width / 2, v.height / 2);
}
function pan(dx, dy) { st.tx += dx; st.ty += dy; apply(); }

$("img").addEventListener("load", () => {
  const img = $("img");
  st.w = img.naturalWidth;
  st.h = img.naturalHeight;
  fit();
  img.style.visibility = "visible";
  st.shownAt = performance.now();
  $("viewer").focus({ preventScroll: true });
});
$("img").addEventListener("error", () => {
  $("msg").textContent = "the image could not be loaded: reload the page to retry";
});
$("viewer").addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = $("viewer").getBoundingClientRect();
  zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
}, { passive: false });
let drag = null;
$("viewer").addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY };
  $("viewer").setPointerCapture(e.pointerId);
  $("viewer").classList.add("dragging");
});
$("viewer").addEventListener("pointermove", (e) => {
  if (!drag) return;
  pan(e.clientX - drag.x, e.clientY - drag.y);
  drag = { x: e.clientX, y: e.clientY };
});
const endDrag = () => { drag = null; $("viewer").classList.remove("dragging"); };
$("viewer").addEventListener("pointerup", endDrag);
$("viewer").addEventListener("pointercancel", endDrag);
window.addEventListener("resize", () => { if (st.w) fit(); });
$("zoom-in").addEventListener("click", () => zoomAt(1.25));
$("zoom-out").addEventListener("click", () => zoomAt(0.8));
$("fit").addEventListener("click", fit);
$("one").addEventListener("click", oneToOne);

function choose(call) { st.call = call; refresh(); }
function rate(q) { st.quality = q; refresh(); }
document.querySelectorAll("[data-call]").forEach((b) =>
  b.addEventListener("click", () => choose(b.dataset.call)));
document.querySelectorAll("[data-q]").forEach((b) =>
  b.addEventListener("click", () => rate(Number(b.dataset.q))));

async function submit() {
  if (st.busy || !st.call || !st.quality || !st.image) return;
  st.busy = true;
  refresh();
  $("msg").className = "msg ok";
  $("msg").textContent = "saving...";
  const r = await api("POST", "/api/answer", {
    reader_id: st.reader, image_id: st.image, call: st.call, quality: st.quality,
    comment: $("comment").value, elapsed_ms: Math.round(performance.now() - st.shownAt) });
  st.busy = false;
  if (r.ok) { show(r.data); return; }
  if (r.status === 409) { await resume(st.reader); return; }  /* answered already: move on */
  if (r.status === 401) { loginScreen(r.data.error); return; }
  $("msg").className = "msg";
  $("msg").textContent = (r.data && r.data.error) || "the answer was not saved: retry";
  refresh();
}
$("submit").addEventListener("click", submit);

document.addEventListener("keydown", (e) => {
  if ($("study").hidden || e.altKey || e.metaKey) return;
  const t = e.target;
  if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT")) {
    if (e.key === "Escape") t.blur();
    if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); submit(); }
    return;
  }
  if (e.ctrlKey) return;
  const k = e.key;
  const step = 60;
  if (k === "r" || k === "R") choose("real");
  else if (k === "s" || k === "S") choose("synthetic");
  else if (k >= "1" && k <= "5") rate(Number(k));
  else if (k === "Enter") submit();
  else if (k === "c" || k === "C") $("comment").focus();
  else if (k === "+" || k === "=") zoomAt(1.25);
  else if (k === "-" || k === "_") zoomAt(0.8);
  else if (k === "f" || k === "F") fit();
  else if (k === "0") oneToOne();
  else if (k === "ArrowLeft") pan(step, 0);
  else if (k === "ArrowRight") pan(-step, 0);
  else if (k === "ArrowUp") pan(0, step);
  else if (k === "ArrowDown") pan(0, -step);
  else return;
  e.preventDefault();
});

async function resume(reader) {
  const r = await api("GET", "/api/progress?reader_id=" + encodeURIComponent(reader));
  if (r.ok) { show(r.data); return true; }
  return false;
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const reader = $("reader").value.trim();
  const r = await api("POST", "/api/session", { reader_id: reader, token: $("token").value.trim() });
  if (!r.ok) { loginScreen(r.data.error || "could not start"); return; }
  localStorage.setItem(KEY, reader);
  show(r.data);
});

function leave(message) {
  localStorage.removeItem(KEY);
  st.reader = null;
  $("reader").value = "";
  loginScreen(message, true);
}
$("stop").addEventListener("click", () => {
  const n = st.prog ? st.prog.answered : 0;
  leave("Stopped. Your " + n + " answers are saved; enter the same reader id to resume.");
});
$("done-leave").addEventListener("click", () => leave(""));

(async function init() {
  const info = await api("GET", "/api/info");
  $("token-row").hidden = !(info.ok && info.data.token_required);
  const saved = localStorage.getItem(KEY);
  if (saved && (await resume(saved))) return;
  if (saved) $("reader").value = saved;
  loginScreen("");
})();
"""
