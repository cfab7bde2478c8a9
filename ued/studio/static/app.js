// ued studio: the page. Hash routes #/runs, #/watch/<run>, #/draw/<run>; the API is polled.
import { lineChart } from "./chart.js";
import { drawMaze, parseMaze, parseParams } from "./levels.js";
import { Editor } from "./draw.js";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const POLL_MS = 1500;
const CHARTS = [
  ["mean_return", "return"], ["solve_rate", "solve rate"], ["loss/value", "value loss"],
  ["loss/policy", "policy loss"], ["loss/entropy", "entropy"], ["sps", "env steps/s"],
  ["eval/solve_rate", "eval solve rate"], ["buffer/score_mean", "buffer mean score"],
  ["grounding/accepted", "sent levels accepted"],
];

export const state = { run: null, info: null, rows: [], next: 0, levels: null, timer: null,
  editor: null, sent: [] };

export async function api(path, body) {
  // The token (when the server has one) goes with every request, reads included.
  const headers = TOKEN ? { "X-Studio-Token": TOKEN } : {};
  const opts = body === undefined ? { headers } : {
    method: "POST", body: JSON.stringify(body),
    headers: { ...headers, "Content-Type": "application/json" },
  };
  const res = await fetch(`/api${path}`, opts);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const fmt = (v, d = 3) => (v === null || v === undefined || !Number.isFinite(+v) ? "–" : (+v).toFixed(d));

function show(page) {
  for (const p of ["runs", "watch", "draw"]) {
    $(`page-${p}`).hidden = p !== page;
    $(`nav-${p}`).classList.toggle("active", p === page);
  }
}

async function route() {
  clearInterval(state.timer);
  const [, page = "runs", name] = location.hash.split("/");
  const run = name ? decodeURIComponent(name) : state.run;
  for (const p of ["watch", "draw"]) $(`nav-${p}`).href = run ? `#/${p}/${encodeURIComponent(run)}` : "#/runs";
  if (page === "runs" || !run) { show("runs"); await runsPage(); state.timer = setInterval(() => runsPage().catch(report), POLL_MS * 2); return; }
  if (run !== state.run) { state.run = run; state.rows = []; state.next = 0; state.info = null; state.levels = null; }
  $("run-label").textContent = run;
  show(page === "draw" ? "draw" : "watch");
  if (!state.info) state.info = await api(`/runs/${encodeURIComponent(run)}`);
  const tick = page === "draw" ? sentTick : watchTick;
  await (page === "draw" ? drawPage() : watchTick());
  state.timer = setInterval(() => tick().catch(report), POLL_MS);
}

// --- runs -------------------------------------------------------------------------------
async function runsPage() {
  const { runs } = await api("/runs");
  $("runs-empty").hidden = runs.length > 0;
  const body = $("runs-table").querySelector("tbody");
  // Keep open configs open across refreshes.
  const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.closest("tr").dataset.run));
  body.innerHTML = runs.map((r) => `
    <tr data-run="${esc(r.name)}"><td><a href="#/watch/${encodeURIComponent(r.name)}">${esc(r.name)}</a></td>
    <td><span class="badge ${r.status}">${r.status}</span></td><td>${esc(r.family)}</td>
    <td>${esc(r.curriculum)}${r.num_seeds > 1 ? ` × ${r.num_seeds} seeds` : ""}</td>
    <td><div class="bar"><div style="width:${(100 * r.progress).toFixed(1)}%"></div></div></td>
    <td>${r.env_steps.toLocaleString()} / ${r.total_env_steps.toLocaleString()}</td>
    <td>${r.pending} pending</td>
    <td><a href="#/draw/${encodeURIComponent(r.name)}">draw</a></td>
    <td><details${open.has(r.name) ? " open" : ""}><summary>config</summary><pre class="config">${esc(JSON.stringify(r.config, null, 1))}</pre></details></td></tr>`).join("");
}

// --- watch ------------------------------------------------------------------------------
async function watchTick() {
  const run = encodeURIComponent(state.run);
  $("watch-name").textContent = state.run;
  const [metrics, summary, levels, inbox] = await Promise.all([
    api(`/runs/${run}/metrics?since=${state.next}`), api("/runs"),
    api(`/runs/${run}/levels`), api(`/runs/${run}/inbox`),
  ]);
  state.rows.push(...metrics.rows);
  state.next = metrics.next;
  state.levels = levels;
  const me = summary.runs.find((r) => r.name === state.run);
  if (me) { $("watch-status").textContent = me.status; $("watch-status").className = `badge ${me.status}`; }
  drawCharts();
  evalTable();
  bufferLevels(levels);
  sentLevels(inbox, $("sent-levels"));
}

function drawCharts() {
  const box = $("charts");
  if (!box.children.length) {
    box.innerHTML = CHARTS.map(([k]) => `<div class="chart"><canvas data-key="${k}"></canvas></div>`).join("");
  }
  for (const [key, title] of CHARTS) {
    const bySeed = new Map();
    for (const r of state.rows) {
      if (!(key in r) || r.env_steps === undefined) continue;
      const seed = r.seed ?? 0;
      if (!bySeed.has(seed)) bySeed.set(seed, []);
      bySeed.get(seed).push([r.env_steps, r[key] === null ? NaN : +r[key]]);
    }
    const series = [...bySeed.entries()].map(([seed, points]) => ({ seed, points }));
    lineChart(box.querySelector(`canvas[data-key="${key}"]`), title, series);
  }
}

function evalTable() {
  const rows = state.rows.filter((r) => "eval/solve_rate" in r && (r.seed ?? 0) === (state.rows[0]?.seed ?? 0));
  if (!rows.length) { $("eval-table").innerHTML = `<p class="muted">No evaluation yet.</p>`; return; }
  const names = Object.keys(rows[rows.length - 1])
    .filter((k) => k.startsWith("eval/") && k.endsWith("/solve_rate") && k !== "eval/solve_rate")
    .map((k) => k.slice(5, -11));
  const head = `<tr><th>env steps</th><th>mean</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}</tr>`;
  const body = rows.slice(-8).reverse().map((r) => `<tr><td>${r.env_steps.toLocaleString()}</td>
    <td>${fmt(r["eval/solve_rate"], 2)}</td>${names.map((n) => `<td>${fmt(r[`eval/${n}/solve_rate`], 2)}</td>`).join("")}</tr>`).join("");
  $("eval-table").innerHTML = `<table>${head}${body}</table><p class="muted">solve rates; newest first</p>`;
}

export function thumbnail(text, size = 138) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  if (state.info.family_info.kind === "grid") {
    drawMaze(canvas, parseMaze(text), { cells: state.info.family_info.max_size });
  } else {
    canvas.height = 60;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#0e1012"; ctx.fillRect(0, 0, size, 60);
    ctx.fillStyle = "#ddd"; ctx.font = "10px monospace";
    Object.entries(parseParams(text)).slice(0, 5).forEach(([k, v], i) => ctx.fillText(`${k}=${(+v).toFixed(2)}`, 4, 12 + 11 * i));
  }
  return canvas;
}

// A program archive: its size, widening stage and grid coverage.
function archiveNote(cur) {
  return `program archive: ${cur.size} of ${cur.capacity} programs, widening stage ${cur.stage + 1} of ${cur.num_stages}, `
    + `${cur.occupied_cells} of ${cur.num_cells} cells of ${cur.grid.join(" × ")} (${fmt(100 * cur.coverage, 0)}%)`;
}

// What a card says of its level: a buffer's score, a program's values and fitness, a slot.
function levelInfo(lv) {
  if (lv.program !== undefined) {
    const values = Object.entries(lv.program).map(([k, v]) => `${esc(k)}=${+v.toFixed(3)}`).join(" ");
    return `fitness ${fmt(lv.fitness)}<br>lp ${fmt(lv.lp)} ± ${fmt(lv.lp_spread)} · age ${lv.age}<br>`
      + `cell (${lv.cell.join(",")}) · slot ${lv.slot}<br><span class="program">${values}</span>`;
  }
  return lv.score === undefined ? `slot ${lv.slot}`
    : `score ${fmt(lv.score)}<br>staleness ${lv.staleness} · edits ${lv.num_edits}`;
}

function bufferLevels(levels) {
  const cur = levels.curriculum;
  const what = cur.kind === "archive" ? archiveNote(cur) : `${cur.kind}: ${cur.size} of ${cur.capacity}`;
  $("levels-note").textContent = levels.checkpoint === null ? "(no checkpoint yet)"
    : `${what}, checkpoint at update ${levels.checkpoint}`;
  const box = $("buffer-levels");
  box.innerHTML = "";
  cur.levels.forEach((lv) => {
    const card = document.createElement("div");
    card.className = "level-card";
    card.dataset.text = lv.text;
    card.appendChild(thumbnail(lv.text));
    card.insertAdjacentHTML("beforeend", `<div>${levelInfo(lv)}</div>`);
    const edit = document.createElement("button");
    edit.textContent = "edit";
    const from = cur.kind === "archive" ? "a sample of archive program" : `${cur.kind} slot`;
    edit.onclick = () => openInEditor(lv.text, `${from} ${lv.slot}`);
    card.appendChild(edit);
    box.appendChild(card);
  });
}

export function openInEditor(text, source) {
  state.pendingText = { text, source };
  location.hash = `#/draw/${encodeURIComponent(state.run)}`;
}

// Sent levels: pending, accepted or rejected by the trainer, and found in the curriculum.
export function sentLevels(inbox, box) {
  // A run that is not training reads nothing: say so on every pending level.
  const waiting = inbox.note ? esc(inbox.note) : "";
  const pending = inbox.pending.map((id) => `<tr data-id="${id}"><td>${id.slice(0, 8)}</td><td class="warn">pending</td><td class="warn">${waiting}</td><td></td></tr>`);
  const done = inbox.events.slice().reverse().map((e) => {
    const mine = state.sent.find((s) => s.id === e.id);
    // Sticky: once a checkpoint holds the level, say which (later ones may have evicted it).
    if (mine && mine.seenAt === undefined && e.found) {
      mine.seenAt = inbox.checkpoint;
      mine.found = e.found;
      mine.seconds = (Date.now() - mine.at) / 1000;
    }
    const into = e.store ? ` into the ${e.store === "grounding" ? "grounding set" : e.store} (slot ${e.slot})` : "";
    const status = e.accepted ? `<span class="ok">accepted${into}</span>` : `<span class="bad">rejected</span>`;
    let where = "";
    const found = e.found || (mine && mine.found);
    if (found) {
      const at = e.found ? inbox.checkpoint : mine.seenAt;
      const extra = found.score === undefined ? "" : `, score ${fmt(found.score)}, staleness ${found.staleness}`;
      const after = mine && mine.seconds !== undefined ? ` · seen ${mine.seconds.toFixed(1)} s after sending` : "";
      where = `<span class="ok">in the ${found.kind === "grounding" ? "grounding set" : found.kind} (slot ${found.slot}${extra}) at checkpoint ${at}${after}</span>`;
    } else if (e.accepted) {
      where = `<span class="muted">not in the newest checkpoint's curriculum</span>`;
    }
    return `<tr data-id="${e.id}"><td>${e.id.slice(0, 8)}</td><td>${status} at update ${e.update}</td><td>${esc(e.reason || "")}</td><td class="trained">${where}</td></tr>`;
  });
  const rows = [...pending, ...done];
  box.innerHTML = rows.length ? `<table><tr><th>id</th><th>status</th><th>reason</th><th>trained on</th></tr>${rows.join("")}</table>`
    : `<p class="muted">Nothing sent yet.</p>`;
}

// --- draw -------------------------------------------------------------------------------
async function drawPage() {
  $("draw-name").textContent = state.run;
  if (!state.editor || state.editor.run !== state.run) {
    if (state.editor) state.editor.stop();
    state.editor = new Editor(state.run, state.info.family_info);
  }
  const levels = state.levels || await api(`/runs/${encodeURIComponent(state.run)}/levels`);
  state.levels = levels;
  state.editor.setSources(levels);
  if (state.pendingText) { state.editor.load(state.pendingText.text); state.pendingText = null; }
  await sentTick();
}

async function sentTick() {
  const run = encodeURIComponent(state.run);
  const inbox = await api(`/runs/${run}/inbox`);
  if (state.sent.length) sentLevels(inbox, $("send-result"));
}

window.addEventListener("hashchange", () => route().catch(report));
window.addEventListener("DOMContentLoaded", () => route().catch(report));
function report(err) { console.error(err); const b = $("check"); if (b) { b.textContent = String(err.message || err); b.className = "check bad"; } }
