// Levels in the browser: the maze's text format as a grid, control levels as name=value,
// and drawing both on a canvas.

export const DIRS = ">v<^"; // 0 right, 1 down, 2 left, 3 up
const COLORS = { free: "#181818", wall: "#6e6e6e", goal: "#28b446", agent: "#dc2828",
  grid: "#303030", path: "rgba(74,163,255,0.45)" };

export function parseMaze(text) {
  const rows = text.split("\n").map((r) => r.trim()).filter((r) => r.length);
  const h = rows.length;
  const w = h ? Math.max(...rows.map((r) => r.length)) : 0;
  const grid = { w, h, walls: [], agent: null, goal: null };
  for (let y = 0; y < h; y++) {
    grid.walls.push([]);
    for (let x = 0; x < w; x++) {
      const c = rows[y][x] || "#";
      grid.walls[y].push(c === "#");
      if (c === "G") grid.goal = { x, y };
      if (DIRS.includes(c)) grid.agent = { x, y, dir: DIRS.indexOf(c) };
    }
  }
  return grid;
}

export function mazeText(grid) {
  const lines = [];
  for (let y = 0; y < grid.h; y++) {
    let line = "";
    for (let x = 0; x < grid.w; x++) {
      if (grid.agent && grid.agent.x === x && grid.agent.y === y) line += DIRS[grid.agent.dir];
      else if (grid.goal && grid.goal.x === x && grid.goal.y === y) line += "G";
      else line += grid.walls[y][x] ? "#" : ".";
    }
    lines.push(line);
  }
  return lines.join("\n");
}

export function emptyMaze(w, h) {
  const walls = Array.from({ length: h }, () => Array(w).fill(false));
  return { w, h, walls, agent: { x: 0, y: 0, dir: 0 }, goal: { x: w - 1, y: h - 1 } };
}

export function resizeMaze(grid, w, h) {
  const out = emptyMaze(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++)
    out.walls[y][x] = y < grid.h && x < grid.w ? grid.walls[y][x] : false;
  const inside = (p) => p && p.x < w && p.y < h;
  out.agent = inside(grid.agent) ? { ...grid.agent } : null;
  out.goal = inside(grid.goal) ? { ...grid.goal } : null;
  return out;
}

function triangle(ctx, cx, cy, r, dir) {
  const a = [0, Math.PI / 2, Math.PI, -Math.PI / 2][dir];
  ctx.beginPath();
  ctx.moveTo(cx + r * Math.cos(a), cy + r * Math.sin(a));
  ctx.lineTo(cx + r * Math.cos(a + 2.5), cy + r * Math.sin(a + 2.5));
  ctx.lineTo(cx + r * Math.cos(a - 2.5), cy + r * Math.sin(a - 2.5));
  ctx.closePath();
  ctx.fill();
}

// Draws a maze grid to fill a canvas; `pose` overrides the agent (an animation frame).
export function drawMaze(canvas, grid, { path = null, pose = null, cells = 0 } = {}) {
  const ctx = canvas.getContext("2d");
  const n = Math.max(grid.w, grid.h, cells, 1);
  const tile = Math.floor(Math.min(canvas.width, canvas.height) / n);
  ctx.fillStyle = "#0e1012";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let y = 0; y < grid.h; y++) for (let x = 0; x < grid.w; x++) {
    ctx.fillStyle = grid.walls[y][x] ? COLORS.wall : COLORS.free;
    ctx.fillRect(x * tile, y * tile, tile, tile);
    ctx.strokeStyle = COLORS.grid;
    ctx.strokeRect(x * tile + 0.5, y * tile + 0.5, tile - 1, tile - 1);
  }
  if (path) {
    ctx.fillStyle = COLORS.path;
    for (const [x, y] of path) ctx.fillRect(x * tile + tile / 4, y * tile + tile / 4, tile / 2, tile / 2);
  }
  if (grid.goal) {
    ctx.fillStyle = COLORS.goal;
    ctx.fillRect(grid.goal.x * tile + 2, grid.goal.y * tile + 2, tile - 4, tile - 4);
  }
  const agent = pose || grid.agent;
  if (agent) {
    ctx.fillStyle = COLORS.agent;
    triangle(ctx, (agent.x + 0.5) * tile, (agent.y + 0.5) * tile, tile * 0.4, agent.dir);
  }
  return tile;
}

export function parseParams(text) {
  const out = {};
  for (const token of text.split(/\s+/)) {
    const m = token.match(/^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

export function paramsText(values, names) {
  return names.map((n) => `${n}=${values[n]}`).join(" ");
}

// A control system at one moment: cart-pole (x, theta), pendulum (theta), else the values.
export function drawPhysics(canvas, family, values, level = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.fillStyle = "#0e1012";
  ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#ddd";
  ctx.lineWidth = 3;
  if (family === "cartpole") {
    const x = values["physics.x"] ?? 0, theta = values["physics.theta"] ?? 0;
    const ground = H * 0.75, cx = W / 2 + x * (W / 5);
    ctx.beginPath(); ctx.moveTo(0, ground); ctx.lineTo(W, ground); ctx.stroke();
    ctx.fillRect(cx - 30, ground - 24, 60, 24);
    const len = Math.min(140, 70 * ((level.pole_length ?? 0.5) / 0.5));
    ctx.strokeStyle = "#e5a13a";
    ctx.beginPath(); ctx.moveTo(cx, ground - 24);
    ctx.lineTo(cx + len * Math.sin(theta), ground - 24 - len * Math.cos(theta)); ctx.stroke();
  } else if (family === "pendulum") {
    const theta = values["physics.theta"] ?? Math.PI;
    const cx = W / 2, cy = H / 2, len = Math.min(90, 80 * (level.length ?? 1));
    ctx.strokeStyle = "#e5a13a";
    ctx.beginPath(); ctx.moveTo(cx, cy);
    ctx.lineTo(cx + len * Math.sin(theta), cy - len * Math.cos(theta)); ctx.stroke();
    ctx.beginPath(); ctx.arc(cx, cy, 5, 0, 2 * Math.PI); ctx.fill();
  } else {
    ctx.font = "13px monospace";
    let y = 20;
    for (const [k, v] of Object.entries(values)) { ctx.fillText(`${k} = ${(+v).toFixed(3)}`, 10, y); y += 18; }
  }
}
