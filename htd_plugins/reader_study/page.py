"""The reading page: plain HTML and CSS (no build step); the script is in :mod:`.page_js`.

The server renders the start page (:func:`render`): instructions, the number of images, the
reader-id form (and the token field when the study needs it) are in the HTML itself, so the
page reads without JavaScript (a plain fetch, a headless screenshot), and a ``<noscript>``
line says that answering needs JavaScript. It holds no other study data: image ids come one
at a time from ``/api``; the key never does.
"""

from __future__ import annotations

from htd_plugins.reader_study.page_js import JS

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reader study</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<section id="login" class="card">
  <h1>Blinded reader study</h1>
  <noscript><p class="msg">This page needs JavaScript to show the images and save your
  answers: allow JavaScript for this address and reload.</p></noscript>
  <p>Each image is either a <b>real</b> H&amp;E image or a <b>synthetic</b> one made by a
  generative model. Say which you think it is and rate its quality from 1 (poor) to 5
  (excellent). Zoom and pan freely. Every answer is saved at once: you can stop at any time
  and resume later with the same reader id.</p>
  <p id="size">This study holds __TOTAL__ images.</p>
  <form id="login-form" autocomplete="off">
    <label for="reader">Reader id</label>
    <input id="reader" name="reader" required maxlength="64"
      pattern="[A-Za-z0-9][A-Za-z0-9_.@\\-]{0,63}" placeholder="e.g. pathologist-1">
    <div id="token-row"__TOKEN_HIDDEN__>
      <label for="token">Study token</label>
      <input id="token" name="token" placeholder="from the study organiser">
    </div>
    <button type="submit" class="primary">Start or resume</button>
    <p id="login-msg" class="msg" role="status"></p>
  </form>
</section>
<section id="study" hidden>
  <header>
    <span id="who"></span>
    <div class="bar" role="progressbar" aria-label="progress"><div id="bar-fill"></div></div>
    <span id="count"></span>
    <button id="stop" type="button">Stop &amp; resume later</button>
  </header>
  <main>
    <div id="viewer" tabindex="-1"><img id="img" alt="image to rate" draggable="false"></div>
    <aside>
      <div class="zoom">
        <button type="button" id="zoom-out" title="zoom out (-)">&minus;</button>
        <span id="zoom-level">100%</span>
        <button type="button" id="zoom-in" title="zoom in (+)">+</button>
        <button type="button" id="fit" title="fit to screen (F)">Fit</button>
        <button type="button" id="one" title="full resolution, 1 image pixel = 1 screen pixel (0)">1:1</button>
      </div>
      <h2>Real or synthetic?</h2>
      <div class="choice">
        <button type="button" data-call="real">Real <kbd>R</kbd></button>
        <button type="button" data-call="synthetic">Synthetic <kbd>S</kbd></button>
      </div>
      <h2>Quality</h2>
      <div class="quality">
        <button type="button" data-q="1">1</button><button type="button" data-q="2">2</button><button type="button" data-q="3">3</button><button type="button" data-q="4">4</button><button type="button" data-q="5">5</button>
      </div>
      <div class="scale"><span>1 poor</span><span>5 excellent</span></div>
      <label for="comment">Comment (optional)</label>
      <textarea id="comment" maxlength="2000" rows="3" placeholder="C to type; Esc to leave"></textarea>
      <button type="button" id="submit" class="primary" disabled>Save &amp; next <kbd>Enter</kbd></button>
      <p id="msg" class="msg" role="status"></p>
      <details>
        <summary>Keyboard shortcuts</summary>
        <dl>
          <dt>R / S</dt><dd>real / synthetic</dd>
          <dt>1 &ndash; 5</dt><dd>quality</dd>
          <dt>Enter</dt><dd>save and show the next image</dd>
          <dt>C</dt><dd>write a comment (Esc leaves it, Ctrl+Enter saves)</dd>
          <dt>+ / &minus; / wheel</dt><dd>zoom</dd>
          <dt>F / 0</dt><dd>fit / full resolution (1:1)</dd>
          <dt>arrows / drag</dt><dd>pan</dd>
        </dl>
      </details>
    </aside>
  </main>
</section>
<section id="done" class="card" hidden>
  <h1>Thank you</h1>
  <p id="done-text"></p>
  <button type="button" id="done-leave">Back to start</button>
</section>
<script src="/app.js"></script>
</body>
</html>
"""

CSS = """
:root { --bg: #f4f4f6; --fg: #1d1d24; --muted: #62626e; --accent: #3552c8; --sel: #203a9e;
  --line: #d4d4dc; --panel: #ffffff; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { display: flow-root; }
[hidden] { display: none !important; }
.card { max-width: 34rem; margin: 10vh auto; background: var(--panel); padding: 2rem 2.2rem;
  border-radius: 10px; box-shadow: 0 2px 14px rgba(0,0,0,.08); }
.card h1 { margin-top: 0; font-size: 1.5rem; }
label { display: block; margin: .8rem 0 .25rem; font-weight: 600; }
input, textarea { width: 100%; padding: .5rem .6rem; font: inherit; border: 1px solid var(--line);
  border-radius: 6px; background: #fff; }
textarea { resize: vertical; }
button { font: inherit; padding: .45rem .8rem; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; color: var(--fg); cursor: pointer; }
button:hover:not(:disabled) { border-color: var(--accent); }
button:disabled { opacity: .45; cursor: not-allowed; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent);
  margin-top: 1rem; width: 100%; padding: .6rem; font-weight: 600; }
button[aria-pressed="true"] { background: var(--sel); color: #fff; border-color: var(--sel); }
kbd { font: 11px/1 ui-monospace, monospace; padding: 2px 4px; border: 1px solid currentColor;
  border-radius: 3px; opacity: .7; margin-left: .3rem; }
.msg { min-height: 1.3em; color: #a3211c; margin: .6rem 0 0; }
.msg.ok { color: var(--muted); }
#study { display: flex; flex-direction: column; height: 100vh; }
header { display: flex; align-items: center; gap: 1rem; padding: .5rem 1rem;
  background: var(--panel); border-bottom: 1px solid var(--line); }
#who { font-weight: 600; white-space: nowrap; }
.bar { flex: 1; height: 10px; background: #e3e3ea; border-radius: 5px; overflow: hidden; }
#bar-fill { height: 100%; width: 0; background: var(--accent); transition: width .2s; }
#count { font-variant-numeric: tabular-nums; color: var(--muted); white-space: nowrap; }
main { flex: 1; display: flex; min-height: 0; }
#viewer { flex: 1; position: relative; overflow: hidden; background: #2a2a30; cursor: grab;
  touch-action: none; outline: none; }
#viewer.dragging { cursor: grabbing; }
#img { position: absolute; left: 0; top: 0; transform-origin: 0 0; user-select: none;
  max-width: none; visibility: hidden; }
#img.pixelated { image-rendering: pixelated; }
aside { width: 300px; flex: none; overflow-y: auto; padding: .8rem 1rem 1rem; background: var(--panel);
  border-left: 1px solid var(--line); }
aside h2 { font-size: 1rem; margin: 1.1rem 0 .45rem; }
.zoom { display: flex; align-items: center; gap: .35rem; }
.zoom button { padding: .25rem .6rem; }
#zoom-level { min-width: 3.6rem; text-align: center; font-variant-numeric: tabular-nums;
  color: var(--muted); }
.choice { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; }
.choice button { padding: .7rem .4rem; font-weight: 600; }
.quality { display: grid; grid-template-columns: repeat(5, 1fr); gap: .35rem; }
.quality button { padding: .55rem 0; font-weight: 600; }
.scale { display: flex; justify-content: space-between; color: var(--muted); font-size: .8rem;
  margin-top: .2rem; }
details { margin-top: 1rem; color: var(--muted); font-size: .85rem; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .15rem .8rem; margin: .5rem 0 0; }
dt { font-weight: 600; } dd { margin: 0; }
"""


def render(total: int, token_required: bool) -> str:
    """The start page as served: ``total`` images, the token field shown when required.

    Args:
        total: images in the study (int).
        token_required: whether readers must enter the study token.
    """
    return HTML.replace("__TOTAL__", str(int(total))).replace(
        "__TOKEN_HIDDEN__", "" if token_required else " hidden"
    )


__all__ = ["CSS", "HTML", "JS", "render"]
