// Small line charts on a canvas: one series per seed, axes with min/max labels.

const PALETTE = ["#4aa3ff", "#e5a13a", "#3fb56b", "#e5534b", "#b07cff", "#2ec4c4"];

export function lineChart(canvas, title, series) {
  const ratio = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 300, cssH = canvas.clientHeight || 150;
  canvas.width = cssW * ratio;
  canvas.height = cssH * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = "#1e2126";
  ctx.fillRect(0, 0, cssW, cssH);
  const pad = { l: 46, r: 8, t: 18, b: 18 };
  ctx.fillStyle = "#e4e6ea";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(title, pad.l, 12);
  const points = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(y));
  if (!points.length) {
    ctx.fillStyle = "#8b919a";
    ctx.fillText("no data yet", pad.l, cssH / 2);
    return;
  }
  let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (cssW - pad.l - pad.r);
  const sy = (y) => cssH - pad.b - ((y - y0) / (y1 - y0)) * (cssH - pad.t - pad.b);
  ctx.strokeStyle = "#3b424c";
  ctx.lineWidth = 1;
  ctx.strokeRect(pad.l, pad.t, cssW - pad.l - pad.r, cssH - pad.t - pad.b);
  ctx.fillStyle = "#8b919a";
  ctx.font = "10px system-ui, sans-serif";
  const fmt = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : +v.toPrecision(3));
  ctx.fillText(fmt(y1), 2, pad.t + 8);
  ctx.fillText(fmt(y0), 2, cssH - pad.b);
  ctx.fillText(fmt(x0), pad.l, cssH - 4);
  const right = `${fmt(x1)} env steps`;
  ctx.fillText(right, cssW - pad.r - ctx.measureText(right).width, cssH - 4);
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) continue;
      if (started) ctx.lineTo(sx(x), sy(y));
      else { ctx.moveTo(sx(x), sy(y)); started = true; }
    }
    ctx.stroke();
    if (s.points.length === 1) ctx.fillRect(sx(s.points[0][0]) - 2, sy(s.points[0][1]) - 2, 4, 4);
  });
}
