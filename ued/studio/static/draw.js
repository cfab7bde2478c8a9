// The level editor: a grid for the maze (click and drag), sliders for control physics, a
// text box for anything else; live checks, files, trying the agent and sending to training.
import { api, state } from "./app.js";
import { drawMaze, drawPhysics, mazeText, paramsText, parseMaze, parseParams, resizeMaze }
  from "./levels.js";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 3) => (Number.isFinite(+v) ? (+v).toFixed(d) : "–");

export class Editor {
  constructor(run, info) {
    this.run = run;
    this.info = info;
    this.path = null;
    this.anim = null;
    this.checkSeq = 0;
    for (const id of ["try-result", "send-result", "check"]) $(id).innerHTML = "";
    const grid = info.kind === "grid";
    $("grid-tools").hidden = !grid;
    $("grid").hidden = !grid;
    $("sliders").hidden = info.kind !== "params";
    $("physics").hidden = info.kind !== "params";
    if (grid) {
      for (const id of ["grid-w", "grid-h"]) $(id).max = info.max_size;
      this.grid = parseMaze(info.example);
      this.bindGrid();
    } else if (info.kind === "params") {
      this.values = parseParams(info.example);
      this.buildSliders();
    }
    $("level-text").oninput = () => this.load($("level-text").value, false);
    $("load-file").onchange = (e) => this.loadFile(e.target.files[0]);
    $("save-file").onclick = () => this.saveFile();
    $("try").onclick = () => this.tryAgent();
    $("send").onclick = () => this.send();
    $("source").onchange = (e) => { if (e.target.value) this.load(e.target.value); };
    this.refresh();
  }

  stop() {
    if (this.anim) { clearInterval(this.anim); clearTimeout(this.anim); this.anim = null; }
    clearTimeout(this.checkTimer);
    this.checkSeq += 1; // a check still in flight is ignored
  }

  text() {
    if (this.info.kind === "grid") return mazeText(this.grid);
    if (this.info.kind === "params") return paramsText(this.values, this.info.params.map((p) => p.name));
    return $("level-text").value;
  }

  load(text, setText = true) {
    if (this.info.kind === "grid") {
      const grid = parseMaze(text);
      if (grid.w && grid.h) this.grid = grid;
    } else if (this.info.kind === "params") {
      this.values = { ...this.values, ...parseParams(text) };
      this.syncSliders();
    }
    this.refresh(setText ? null : text);
  }

  setSources(levels) {
    const opts = ['<option value="">(a level shown in the app)</option>'];
    const add = (label, text) => opts.push(`<option value="${text.replace(/"/g, "&quot;")}">${label}</option>`);
    for (const lv of levels.named) add(`named: ${lv.name}${lv.solve_rate == null ? "" : ` (solve ${fmt(lv.solve_rate, 2)})`}`, lv.text);
    const failures = levels.named.filter((l) => l.solve_rate != null).sort((a, b) => a.solve_rate - b.solve_rate).slice(0, 3);
    for (const lv of failures) add(`failure: ${lv.name} (solve ${fmt(lv.solve_rate, 2)})`, lv.text);
    for (const lv of levels.curriculum.levels) {
      const note = lv.score !== undefined ? ` (score ${fmt(lv.score)})` : lv.fitness !== undefined ? ` (fitness ${fmt(lv.fitness)})` : "";
      add(`${levels.curriculum.kind} slot ${lv.slot}${note}`, lv.text);
    }
    $("source").innerHTML = opts.join("");
  }

  // --- grid ---------------------------------------------------------------------------
  bindGrid() {
    const canvas = $("grid");
    let painting = null;
    const cell = (e) => {
      const r = canvas.getBoundingClientRect();
      const n = Math.max(this.grid.w, this.grid.h);
      const tile = Math.floor(Math.min(canvas.width, canvas.height) / n);
      const x = Math.floor(((e.clientX - r.left) * canvas.width) / r.width / tile);
      const y = Math.floor(((e.clientY - r.top) * canvas.height) / r.height / tile);
      return x >= 0 && y >= 0 && x < this.grid.w && y < this.grid.h ? { x, y } : null;
    };
    const apply = (c) => {
      const tool = document.querySelector('input[name="tool"]:checked').value;
      const g = this.grid;
      const at = (p) => p && p.x === c.x && p.y === c.y;
      if (tool === "wall" || tool === "erase") {
        if (tool === "wall" && (at(g.agent) || at(g.goal))) return;
        g.walls[c.y][c.x] = tool === "wall";
      } else if (tool === "goal" && !at(g.agent)) {
        g.goal = { x: c.x, y: c.y }; g.walls[c.y][c.x] = false;
      } else if (tool === "agent" && !at(g.goal)) {
        g.agent = { x: c.x, y: c.y, dir: g.agent ? g.agent.dir : 0 }; g.walls[c.y][c.x] = false;
      }
      this.refresh();
    };
    canvas.onpointerdown = (e) => { const c = cell(e); if (c) { painting = true; apply(c); } };
    canvas.onpointermove = (e) => {
      const tool = document.querySelector('input[name="tool"]:checked').value;
      if (painting && (tool === "wall" || tool === "erase")) { const c = cell(e); if (c) apply(c); }
    };
    window.addEventListener("pointerup", () => { painting = null; });
    $("rotate").onclick = () => { if (this.grid.agent) { this.grid.agent.dir = (this.grid.agent.dir + 1) % 4; this.refresh(); } };
    $("clear").onclick = () => { this.grid.walls = this.grid.walls.map((r) => r.map(() => false)); this.refresh(); };
    const resize = () => {
      const clamp = (v) => Math.max(1, Math.min(this.info.max_size, Math.floor(+v) || 1));
      this.grid = resizeMaze(this.grid, clamp($("grid-w").value), clamp($("grid-h").value));
      this.refresh();
    };
    $("grid-w").onchange = resize;
    $("grid-h").onchange = resize;
  }

  // --- sliders --------------------------------------------------------------------------
  buildSliders() {
    const box = $("sliders");
    box.innerHTML = "";
    for (const p of this.info.params) {
      const [lo, hi] = p.bounds;
      const step = (hi - lo) / 1000;
      box.insertAdjacentHTML("beforeend", `<label title="${p.doc}">${p.name}${p.unit ? ` (${p.unit})` : ""}</label>
        <input type="range" id="p-${p.name}" min="${lo}" max="${hi}" step="${step}">
        <span id="v-${p.name}"></span>`);
    }
    for (const p of this.info.params) {
      $(`p-${p.name}`).oninput = (e) => { this.values[p.name] = +(+e.target.value).toPrecision(5); this.refresh(); };
    }
    this.syncSliders();
  }

  syncSliders() {
    for (const p of this.info.params) {
      if (!$(`p-${p.name}`)) continue;
      $(`p-${p.name}`).value = this.values[p.name];
      $(`v-${p.name}`).textContent = fmt(this.values[p.name]);
    }
  }

  // --- drawing and checks -----------------------------------------------------------------
  draw(pose = null, physics = null) {
    if (this.info.kind === "grid") {
      drawMaze($("grid"), this.grid, { path: pose ? null : this.path, pose });
      $("grid-w").value = this.grid.w;
      $("grid-h").value = this.grid.h;
    } else if (this.info.kind === "params") {
      this.syncSliders();
      drawPhysics($("physics"), this.info.family, physics || {}, this.values);
    }
  }

  refresh(typed = null) {
    if (this.anim) { clearInterval(this.anim); clearTimeout(this.anim); this.anim = null; }
    const text = typed ?? this.text();
    if (typed === null) $("level-text").value = text;
    this.draw();
    clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => this.check(text), 120);
  }

  async check(text) {
    const seq = ++this.checkSeq;
    const box = $("check");
    try {
      const res = await api(`/runs/${encodeURIComponent(this.run)}/check`, { level: text });
      if (seq !== this.checkSeq) return;
      this.path = res.valid ? res.path || null : null;
      const num = (v) => (v === null ? "–" : Number.isInteger(v) ? v : +v.toPrecision(4));
      const metrics = res.valid ? Object.entries(res.metrics).map(([k, v]) => `${k} ${num(v)}`).join(" · ") : "";
      box.textContent = res.valid ? `valid level · ${metrics}` : `not valid: ${res.error}`;
      box.className = `check ${res.valid && (res.metrics.solvable ?? 1) > 0 ? "ok" : "bad"}`;
      this.draw();
    } catch (err) {
      box.textContent = String(err.message || err);
      box.className = "check bad";
    }
  }

  // --- files --------------------------------------------------------------------------
  async loadFile(file) {
    if (!file) return;
    if (file.size > 32 * 1024) { $("check").textContent = "the file is over 32 KiB"; return; }
    const text = await file.text();
    const first = text.split(/\n\s*\n/).find((b) => b.trim()) || "";
    this.load(first);
  }

  saveFile() {
    const blob = new Blob([this.text() + "\n"], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${this.info.family}_level.txt`;
    a.click();
    URL.revokeObjectURL(a.href);
  }

  // --- try and send -------------------------------------------------------------------
  async tryAgent() {
    const box = $("try-result");
    const episodes = Math.max(1, Math.min(64, Math.floor(+$("episodes").value) || 16));
    box.innerHTML = "running the latest policy…";
    $("try").disabled = true;
    try {
      const res = await api(`/runs/${encodeURIComponent(this.run)}/try`, { level: $("level-text").value, episodes });
      const ep = res.episode;
      box.innerHTML = `<div id="try-summary">checkpoint ${res.checkpoint}: solve rate <b>${fmt(res.solve_rate, 2)}</b>,
        return ${fmt(res.mean_return)}, length ${fmt(res.mean_length, 1)} over ${res.episodes} episodes</div>
        <div class="muted">replaying one episode: ${ep.solved ? "solved" : "not solved"} in ${ep.length} steps,
        return ${fmt(ep.return)} <span id="frame"></span></div>`;
      this.play(ep);
    } catch (err) {
      box.innerHTML = `<span class="bad">${err.message}</span>`;
    } finally {
      $("try").disabled = false;
    }
  }

  play(ep) {
    const steps = ep.steps;
    const n = ep.length + 1;
    let t = 0;
    if (this.anim) { clearInterval(this.anim); clearTimeout(this.anim); }
    const frame = () => {
      const at = (k) => (steps[k] ? steps[k][Math.min(t, steps[k].length - 1)] : undefined);
      if (this.info.kind === "grid") {
        const pos = at("agent_pos"), dir = at("agent_dir");
        if (pos) this.draw({ x: pos[0], y: pos[1], dir: dir | 0 });
      } else if (this.info.kind === "params") {
        const values = {};
        for (const k of Object.keys(steps)) values[k] = at(k);
        this.draw(null, values);
      }
      const label = $("frame");
      if (label) label.textContent = `(step ${t} of ${n - 1})`;
      t += 1;
      if (t >= n) {
        clearInterval(this.anim);
        // Hold the last frame a moment, then show the level as drawn again.
        this.anim = setTimeout(() => { this.anim = null; this.draw(); }, 1500);
      }
    };
    frame();
    this.anim = setInterval(frame, this.info.kind === "grid" ? 120 : 40);
  }

  async send() {
    const box = $("send-result");
    try {
      const res = await api(`/runs/${encodeURIComponent(this.run)}/send`, { level: $("level-text").value, source: $("source").selectedOptions[0]?.textContent || "drawn" });
      state.sent.push({ id: res.id, text: res.text, at: Date.now() });
      box.innerHTML = `sent ${res.id.slice(0, 8)}${res.note ? ` <span class="warn">(${res.note})</span>` : ""}`;
    } catch (err) {
      box.innerHTML = `<span class="bad">${err.message}</span>`;
    }
  }
}
