// The web chat: one conversation thread at a time, driven through the HTTP API (see /docs).
// The thread id is kept in the URL hash and in localStorage, so a reload (or a server restart) resumes it.
// Everything from the server is inserted as text, never as HTML. An item without an image (a caption-only gallery)
// is shown as a card of its caption, never as an image element without a picture.
"use strict";

const $ = (id) => document.getElementById(id);
// The next message starts from `pick` (a result of the last search) or `ref` (a gallery item), at most one.
const state = { thread: null, gallery: null, pick: null, ref: null, busy: false };

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function setBusy(busy, status = "") {
  state.busy = busy;
  for (const id of ["send", "undo", "reset", "new"]) $(id).disabled = busy;
  $("status").textContent = status;
}

// An image, or a caption card when there is no image URL.
function visual(url, captions, alt, imgClass) {
  if (url) return el("img", { class: imgClass, src: url, alt, loading: "lazy" });
  return el("div", { class: "caption-card", title: alt }, (captions && captions[0]) || alt);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (response.status === 401) {  // the server needs its access token: its login page asks for it
    location.assign("/login");
    throw new Error("this server needs its access token");
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

function showChip() {
  const label = state.ref ? `gallery item ${state.ref}` : (state.pick ? `#${state.pick.rank} ${state.pick.id}` : "");
  $("pick-chip").hidden = !label;
  $("pick-label").textContent = label;
  document.querySelectorAll(".hit").forEach((node) =>
    node.classList.toggle("picked", state.pick !== null && node.dataset.rank === String(state.pick.rank)));
  document.querySelectorAll("#items .item").forEach((node) =>
    node.classList.toggle("chosen", state.ref !== null && node.dataset.id === state.ref));
}

function setPick(hit) {
  state.pick = hit || null;
  if (hit) state.ref = null;
  showChip();
}

function setRef(itemId) {
  state.ref = itemId || null;
  if (itemId) state.pick = null;
  showChip();
}

function renderItems(items) {
  $("items").replaceChildren(...items.map((item) => {
    const card = el("figure", { class: "item", "data-id": item.id, title: "start the next message from this item" });
    card.append(visual(item.thumbnail, item.captions, item.id, "thumb"));
    card.append(el("figcaption", { class: "meta" }, item.id));
    card.addEventListener("click", () => setRef(state.ref === item.id ? null : item.id));
    return card;
  }));
  if (!items.length) $("items").append(el("p", { class: "muted" }, "no item matches"));
  showChip();
}

async function findItems(event) {
  if (event) event.preventDefault();
  const query = $("item-query").value.trim();
  const gallery = encodeURIComponent(state.gallery);
  const path = query ? `/api/galleries/${gallery}/items?q=${encodeURIComponent(query)}`
                     : `/api/galleries/${gallery}/sample?n=12`;
  try {
    showError("");
    renderItems(await (await api(path)).json());
  } catch (error) {
    showError(error.message);
  }
}

function renderList(target, items) {
  target.replaceChildren(...items.map((text) => el("li", {}, text)));
}

function renderTurn(turn) {
  $("current").hidden = false;
  const ref = turn.reference;
  $("reference-img").hidden = !ref.url;
  if (ref.url) $("reference-img").src = ref.url; else $("reference-img").removeAttribute("src");
  $("reference-caption").hidden = !!ref.url;
  $("reference-caption").textContent = ref.url ? "" : ((ref.captions && ref.captions[0]) || ref.id || "");
  const why = turn.explanation || {};
  $("description").textContent = turn.kind === "select"
    ? `new reference: ${turn.reference.name || turn.reference.id || "uploaded image"}` : (turn.description || "");
  $("caption").textContent = turn.context ? `refining: ${turn.context}` : (why.caption ? `caption: ${why.caption}` : "");
  renderList($("descriptions"), why.descriptions || []);
  renderList($("propositions"), (why.propositions || []).map(
    (p) => `${p.polarity === "must_not_show" ? "must not show" : "must show"}: ${p.text}`));
  renderList($("verdicts"), Object.entries(why.verdicts || {}).map(
    ([id, v]) => `${id}: ${typeof v.score === "number" ? v.score.toFixed(2) : JSON.stringify(v)}`));
  $("stop").textContent = why.stop_reason ? `rounds: ${why.rounds}, stop: ${why.stop_reason}` : "";
  const cards = turn.hits.map((hit) => {
    const card = el("figure", { class: "hit", "data-rank": String(hit.rank), "data-id": hit.id,
                                title: "start the next message from this result" });
    card.append(visual(hit.thumbnail, hit.captions, hit.id, "thumb"));
    const verdict = hit.verdict === null || hit.verdict === undefined ? "" : `, verified ${hit.verdict.toFixed(2)}`;
    card.append(el("figcaption", { class: "meta" }, `#${hit.rank} ${hit.id} (${hit.score.toFixed(3)}${verdict})`));
    card.addEventListener("click", () => setPick(state.pick && state.pick.rank === hit.rank ? null : hit));
    return card;
  });
  if (turn.kind === "search" || cards.length) $("results").replaceChildren(...cards);
}

function renderThread(thread) {
  state.thread = thread.thread_id;
  state.gallery = thread.gallery;
  $("thread-id").textContent = thread.thread_id;
  $("gallery").value = thread.gallery;
  localStorage.setItem("cirgraph-thread", thread.thread_id);
  history.replaceState(null, "", `#thread=${encodeURIComponent(thread.thread_id)}`);
  $("history").replaceChildren(...thread.turns.map((turn) => {
    const item = el("li", { "data-n": String(turn.n) });
    item.append(visual(turn.reference.url, turn.reference.captions, turn.reference.id || "", ""));
    const said = turn.text || (turn.pick ? `#${turn.pick}` : "new image");
    item.append(el("span", {}, `${said}${turn.description ? " -> " + turn.description : ""}`));
    return item;
  }));
  const last = thread.turns[thread.turns.length - 1];
  if (last) renderTurn(last); else { $("current").hidden = true; $("results").replaceChildren(); }
  $("start-from").open = !last;
  state.ref = null;
  setPick(null);
  if (!last) findItems(null);  // an empty thread offers gallery items to start from
}

async function newThread() {
  const body = JSON.stringify({ gallery: $("gallery").value || null });
  const response = await api("/api/threads", { method: "POST", headers: { "Content-Type": "application/json" }, body });
  renderThread(await response.json());
}

async function loadThread(id) {
  renderThread(await (await api(`/api/threads/${encodeURIComponent(id)}`)).json());
}

async function readStream(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: !done });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onEvent(JSON.parse(line));
    }
    if (done) return;
  }
}

async function send(event) {
  event.preventDefault();
  if (state.busy) return;
  const form = new FormData();
  form.append("text", $("text").value);
  const file = $("file").files[0];
  if (file) form.append("image", file);
  else if (state.ref !== null) form.append("ref_id", state.ref);
  else if (state.pick !== null) form.append("pick", String(state.pick.rank));
  setBusy(true, "searching...");
  showError("");
  $("progress").replaceChildren();
  try {
    const url = `/api/threads/${encodeURIComponent(state.thread)}/turns?stream=true`;
    const response = await api(url, { method: "POST", body: form });
    await readStream(response, (item) => {
      if (item.event === "stage") $("progress").append(el("li", {}, item.summary));
      if (item.event === "error") throw new Error(item.detail);
    });
    $("text").value = "";
    $("file").value = "";
    await loadThread(state.thread);
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

async function action(path) {
  if (state.busy) return;
  setBusy(true);
  showError("");
  try {
    await api(`/api/threads/${encodeURIComponent(state.thread)}/${path}`, { method: "POST" });
    $("progress").replaceChildren();
    await loadThread(state.thread);
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

async function start() {
  const galleries = await (await api("/api/galleries")).json();
  $("gallery").replaceChildren(...galleries.map((g) => el("option", { value: g.name }, `${g.name} (${g.count ?? "?"})`)));
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("thread");
  const known = fromHash || localStorage.getItem("cirgraph-thread");
  try {
    if (known) await loadThread(known); else await newThread();
  } catch (error) {
    await newThread();
  }
}

$("composer").addEventListener("submit", send);
$("undo").addEventListener("click", () => action("undo"));
$("reset").addEventListener("click", () => action("reset"));
$("unpick").addEventListener("click", () => { setRef(null); setPick(null); });
$("item-search").addEventListener("submit", findItems);
$("item-random").addEventListener("click", () => { $("item-query").value = ""; findItems(null); });
$("new").addEventListener("click", () => newThread().catch((e) => showError(e.message)));
$("gallery").addEventListener("change", () => newThread().catch((e) => showError(e.message)));
start().then(() => document.body.dataset.ready = "1").catch((error) => showError(error.message));
