// Small dependency-free SVG charts: columns over time and horizontal bars for a breakdown.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

// points: [{label, value}] in time order; fmt formats a value for axis and tooltips.
export function columns(container, points, fmt, summary) {
  const W = 480, H = 180, L = 76, B = 22, T = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "svgchart" });
  root.append(svg("title", {}, summary));
  const max = Math.max(0, ...points.map((p) => p.value)) || 1;
  const bw = (W - L - 4) / Math.max(points.length, 1);
  root.append(svg("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }));
  root.append(svg("text", { x: L - 6, y: T + 10, "text-anchor": "end", class: "tick" }, fmt(max)));
  root.append(svg("text", { x: L - 6, y: H - B, "text-anchor": "end", class: "tick" }, fmt(0)));
  points.forEach((p, i) => {
    const hgt = ((H - B - T) * p.value) / max;
    const rect = svg("rect", { x: L + i * bw + 1, y: H - B - hgt, width: Math.max(bw - 2, 1), height: hgt, class: "bar" });
    rect.append(svg("title", {}, `${p.label}: ${fmt(p.value)}`));
    root.append(rect);
  });
  const step = Math.ceil(points.length / 4) || 1;
  points.forEach((p, i) => {
    if (i % step === 0) root.append(svg("text", { x: L + i * bw, y: H - 6, class: "tick" }, p.short || p.label));
  });
  container.replaceChildren(root);
  if (!points.some((p) => p.value)) container.append(emptyNote());
}

// entries: [[name, value]] largest first.
export function bars(container, entries, fmt, summary) {
  const row = 26, W = 480, L = 170;
  const H = Math.max(entries.length, 1) * row + 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "svgchart" });
  root.append(svg("title", {}, summary));
  const max = Math.max(1, ...entries.map((e) => e[1]));
  entries.forEach(([name, value], i) => {
    const y = 4 + i * row;
    const label = name.length > 24 ? name.slice(0, 23) + "…" : name;
    root.append(svg("text", { x: L - 6, y: y + 16, "text-anchor": "end", class: "tick" }, label));
    const w = ((W - L - 60) * value) / max;
    const rect = svg("rect", { x: L, y: y + 3, width: Math.max(w, 1), height: row - 8, class: "bar alt" });
    rect.append(svg("title", {}, `${name}: ${fmt(value)}`));
    root.append(rect);
    root.append(svg("text", { x: L + w + 6, y: y + 16, class: "tick" }, fmt(value)));
  });
  container.replaceChildren(root);
  if (!entries.length) container.append(emptyNote());
}

function emptyNote() {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = "No requests in this range.";
  return p;
}
