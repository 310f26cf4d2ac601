// The stack viewer (imaging_viewer.html): plain ES module, no build step, no dependency.
//
// The server renders every frame (secretum.imaging.render: modality LUT, VOI window,
// MONOCHROME1) as PNG under the viewing's ticket (the series was opened once, one audit entry);
// this module only asks for the frame and window it needs, keeps a few decoded images, and
// draws them on a canvas with zoom and pan.
//
// Mouse: wheel = next/previous image, Ctrl+wheel = zoom, drag = window (left/right: width,
// up/down: center), Shift+drag or middle/right drag = pan.
// Keyboard (canvas or a viewer button focused): arrows ↑/↓ (and ←/→) = one image, Page Up/Page Down = a tenth of
// the stack, Home/End = first/last, +/- = zoom, 1..4 = presets, 0 = default window, R = reset.

const CACHE_SIZE = 96;
const PREFETCH = 3;
const ZOOM_STEP = 1.25;

const root = document.getElementById("viewer");
if (root) start(root);

function start(root) {
  const base = root.dataset.base;
  const frames = JSON.parse(root.dataset.frames); // [[sop_uid, frame number, position], ...]
  // [center, width]; null when the series stores none (not CT): the first frame, rendered
  // with its own range, tells the window (X-Window header) before anything else is asked
  let defaultWindow = JSON.parse(root.dataset.window);
  // [[name, center, width], ...] in the order of the buttons (keys 1, 2, 3...)
  const presetList = JSON.parse(root.dataset.presets);
  const presets = Object.fromEntries(presetList.map(([name, c, w]) => [name, [c, w]]));
  const presetNames = presetList.map(([name]) => name);
  const numbers = new Intl.NumberFormat(root.dataset.lang === "fr" ? "fr-FR" : "en-GB", {
    maximumFractionDigits: 1,
  });
  const canvas = root.querySelector("canvas");
  const g = canvas.getContext("2d");
  const status = root.querySelector("#viewer-status");
  const field = (name) => root.querySelectorAll(`[data-field="${name}"]`);

  const state = {
    index: 0,
    center: defaultWindow ? defaultWindow[0] : 0,
    width: defaultWindow ? defaultWindow[1] : 1,
    preset: "default",
    zoom: 1,
    panX: 0,
    panY: 0,
  };
  const cache = new Map(); // key -> ImageBitmap (oldest first)
  const loading = new Map(); // key -> promise of its fetch
  let shown = null; // the bitmap on the canvas
  let failed = false;

  const keyOf = (index, center, width) => `${index}|${Math.round(center)}|${Math.round(width)}`;
  const currentKey = () => keyOf(state.index, state.center, state.width);

  function url(index, center, width) {
    const [sop, number] = frames[index];
    const c = Math.round(center);
    const w = Math.max(1, Math.round(width));
    return `${base}${encodeURIComponent(sop)}/${number}?window=${c},${w}`;
  }

  function fetchFrame(index, center, width) {
    const key = keyOf(index, center, width);
    if (cache.has(key)) return Promise.resolve();
    if (loading.has(key)) return loading.get(key); // a prefetch of it is under way
    const promise = (async () => {
      const response = await fetch(url(index, center, width), {
        credentials: "same-origin",
        headers: { accept: "image/png" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const bitmap = await createImageBitmap(await response.blob());
      cache.set(key, bitmap);
      while (cache.size > CACHE_SIZE) {
        const [oldest, old] = cache.entries().next().value;
        cache.delete(oldest);
        if (old !== shown) old.close();
      }
    })().finally(() => loading.delete(key));
    loading.set(key, promise);
    return promise;
  }

  // Ask for what the state shows; the latest state wins (a drag asks many windows: only
  // one request for the current image is in flight, and it is re-asked when it lands stale).
  let busy = false;
  async function update() {
    paintInfo();
    const key = currentKey();
    if (cache.has(key)) {
      draw(cache.get(key), key);
      prefetch();
      return;
    }
    if (busy) return;
    busy = true;
    const [index, center, width] = [state.index, state.center, state.width];
    try {
      await fetchFrame(index, center, width);
      failed = false;
    } catch (error) {
      failed = true;
      status.textContent = root.dataset.error;
      status.classList.add("error");
    } finally {
      busy = false;
    }
    if (cache.has(key)) draw(cache.get(key), key); // stale or not: the latest that landed
    if (!failed && key !== currentKey()) update();
    else if (!failed) prefetch();
  }

  let prefetching = false;
  async function prefetch() {
    if (prefetching || failed) return;
    prefetching = true;
    try {
      for (let step = 1; step <= PREFETCH; step++) {
        for (const index of [state.index + step, state.index - step]) {
          if (index < 0 || index >= frames.length) continue;
          const [center, width] = [state.center, state.width];
          if (!cache.has(keyOf(index, center, width))) await fetchFrame(index, center, width);
        }
      }
    } catch (error) {
      // a neighbour failed: the current image still shows; update() reports real failures
    } finally {
      prefetching = false;
    }
  }

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    const width = Math.max(1, Math.round(box.width * ratio));
    const height = Math.max(1, Math.round(box.height * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    if (shown) draw(shown, root.dataset.shown);
  }

  function draw(bitmap, key) {
    shown = bitmap;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
    const fit = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const scale = fit * state.zoom;
    const ratio = window.devicePixelRatio || 1;
    const x = (canvas.width - bitmap.width * scale) / 2 + state.panX * ratio;
    const y = (canvas.height - bitmap.height * scale) / 2 + state.panY * ratio;
    g.imageSmoothingEnabled = scale < 8; // pixels show as squares only when zoomed in far
    g.drawImage(bitmap, x, y, bitmap.width * scale, bitmap.height * scale);
    root.dataset.shown = key;
    if (!failed) {
      status.textContent = "";
      status.classList.remove("error");
    }
  }

  function paintInfo() {
    const n = frames.length;
    const position = frames[state.index][2];
    const slice = `${state.index + 1} / ${n}`;
    const where =
      position === null ? "" : root.dataset.mm.replace("{value}", numbers.format(position));
    const wl = `${numbers.format(Math.round(state.center))} / ${numbers.format(Math.round(state.width))}`;
    for (const el of field("slice")) el.textContent = slice;
    for (const el of field("position")) el.textContent = where;
    for (const el of field("window")) el.textContent = wl;
    for (const el of field("zoom")) el.textContent = `${Math.round(state.zoom * 100)} %`;
    for (const el of field("overlay-slice")) el.textContent = `${slice}${where ? " · " + where : ""}`;
    for (const el of field("overlay-window")) el.textContent = `W/L ${wl}`;
    canvas.setAttribute(
      "aria-label",
      root.dataset.label.replace("{i}", String(state.index + 1)).replace("{n}", String(n)),
    );
    for (const button of root.querySelectorAll("[data-preset]")) {
      button.setAttribute("aria-pressed", String(button.dataset.preset === state.preset));
    }
  }

  function go(index) {
    const next = Math.min(frames.length - 1, Math.max(0, index));
    if (next === state.index) return;
    state.index = next;
    update();
  }

  function setWindow(center, width, preset) {
    state.center = center;
    state.width = Math.max(1, width);
    state.preset = preset;
    update();
  }

  function preset(name) {
    if (name === "default") setWindow(defaultWindow[0], defaultWindow[1], "default");
    else if (presets[name]) setWindow(presets[name][0], presets[name][1], name);
  }

  function zoom(factor) {
    state.zoom = Math.min(16, Math.max(0.25, state.zoom * factor));
    paintInfo();
    if (shown) draw(shown, root.dataset.shown);
  }

  function reset() {
    state.zoom = 1;
    state.panX = 0;
    state.panY = 0;
    preset("default");
    if (shown) draw(shown, root.dataset.shown);
  }

  // -- mouse ----------------------------------------------------------------------------------
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      if (event.ctrlKey) zoom(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP);
      else if (event.deltaY !== 0) go(state.index + (event.deltaY > 0 ? 1 : -1));
    },
    { passive: false },
  );

  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    canvas.focus();
    const pan = event.shiftKey || event.button === 1 || event.button === 2;
    drag = { pan, x: event.clientX, y: event.clientY };
    canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
    if (drag.pan) {
      state.panX += dx;
      state.panY += dy;
      if (shown) draw(shown, root.dataset.shown);
    } else {
      const sensitivity = Math.max(1, state.width / 200);
      setWindow(state.center + dy * sensitivity, state.width + dx * sensitivity, "custom");
    }
  });
  const endDrag = () => {
    drag = null;
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  // -- keyboard -------------------------------------------------------------------------------
  const page = Math.max(1, Math.round(frames.length / 10));
  root.addEventListener("keydown", (event) => {
    const actions = {
      ArrowDown: () => go(state.index + 1),
      ArrowRight: () => go(state.index + 1),
      ArrowUp: () => go(state.index - 1),
      ArrowLeft: () => go(state.index - 1),
      PageDown: () => go(state.index + page),
      PageUp: () => go(state.index - page),
      Home: () => go(0),
      End: () => go(frames.length - 1),
      "+": () => zoom(ZOOM_STEP),
      "=": () => zoom(ZOOM_STEP),
      "-": () => zoom(1 / ZOOM_STEP),
      0: () => preset("default"),
      r: () => reset(),
      R: () => reset(),
    };
    presetNames.forEach((name, i) => {
      actions[String(i + 1)] = () => preset(name);
    });
    const action = actions[event.key];
    if (action && !event.altKey && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      action();
    }
  });

  // -- buttons --------------------------------------------------------------------------------
  for (const button of root.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => preset(button.dataset.preset));
  }
  const buttonActions = {
    previous: () => go(state.index - 1),
    next: () => go(state.index + 1),
    "zoom-in": () => zoom(ZOOM_STEP),
    "zoom-out": () => zoom(1 / ZOOM_STEP),
    reset: () => reset(),
  };
  for (const button of root.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => buttonActions[button.dataset.action]());
  }

  // A series without a stored window: the server picks the first frame's range, and says so.
  async function calibrate() {
    const [sop, number] = frames[0];
    const response = await fetch(`${base}${encodeURIComponent(sop)}/${number}`, {
      credentials: "same-origin",
      headers: { accept: "image/png" },
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const [center, width] = (response.headers.get("x-window") || "0,1").split(",").map(Number);
    defaultWindow = [center, width];
    state.center = center;
    state.width = width;
    cache.set(keyOf(0, center, width), await createImageBitmap(await response.blob()));
  }

  new ResizeObserver(resize).observe(canvas);
  resize();
  if (defaultWindow) update();
  else
    calibrate().then(update, () => {
      status.textContent = root.dataset.error;
      status.classList.add("error");
    });
}
