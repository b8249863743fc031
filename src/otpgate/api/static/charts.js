// Small SVG charts for the dashboard: a line over time and labelled bars. Text goes in
// through textContent only; nothing is parsed as HTML.
"use strict";
window.OtpCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f5bea", "#15803d", "#b45309", "#b91c1c", "#7c3aed", "#0891b2",
                   "#db2777", "#4b5563"];

  function node(tag, attrs, text) {
    const made = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) made.setAttribute(key, value);
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function frame(svg) {
    svg.replaceChildren();
    const box = svg.getBoundingClientRect();
    const width = Math.max(200, Math.round(box.width || 400));
    const height = Math.max(120, Math.round(box.height || 190));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    return { width, height };
  }

  function empty(svg, message) {
    const { width, height } = frame(svg);
    svg.append(node("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
                              class: "empty-note" }, message));
  }

  // points: [[t, value], ...], newest last.
  function line(svg, points, unit) {
    if (points.length < 2) return empty(svg, "collecting…");
    const { width, height } = frame(svg);
    const left = 44, bottom = 20, top = 10, right = 8;
    const values = points.map(p => p[1]);
    const max = Math.max(1, ...values) * 1.15;
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
    const x = t => left + (width - left - right) * (t - t0) / Math.max(1e-9, t1 - t0);
    const y = v => top + (height - top - bottom) * (1 - v / max);
    for (const tick of [0, max / 2, max]) {
      svg.append(node("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick),
                                class: "axis" }));
      svg.append(node("text", { x: left - 4, y: y(tick) + 4, "text-anchor": "end" },
                      tick.toFixed(tick < 10 ? 1 : 0)));
    }
    const path = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg.append(node("path", { d: `${path}L${x(t1)},${y(0)}L${x(t0)},${y(0)}Z`, class: "area" }));
    svg.append(node("path", { d: path, class: "line", "data-points": points.length }));
    svg.append(node("text", { x: width - right, y: height - 4, "text-anchor": "end" },
                    `last ${Math.round(t1 - t0)} s · now ${values[values.length - 1].toFixed(1)} ${unit}`));
  }

  // bars: [{label, value, color?, text?}], drawn horizontally.
  function bars(svg, items, options) {
    const opts = options || {};
    if (!items.length) return empty(svg, opts.empty || "no data yet");
    const { width, height } = frame(svg);
    const left = opts.labelWidth || 120, right = 70;
    const rows = Math.max(items.length, 3);
    const step = (height - 8) / rows;
    const max = opts.max || Math.max(1e-9, ...items.map(i => i.value));
    items.forEach((item, index) => {
      const barY = 4 + index * step;
      const barW = Math.max(1, (width - left - right) * item.value / max);
      svg.append(node("text", { x: left - 6, y: barY + step * 0.62, "text-anchor": "end" },
                      item.label));
      svg.append(node("rect", { x: left, y: barY + step * 0.15, width: barW,
                                height: step * 0.7, rx: 3, class: "bar",
                                fill: item.color || PALETTE[index % PALETTE.length] }));
      svg.append(node("text", { x: left + barW + 6, y: barY + step * 0.62 },
                      item.text !== undefined ? item.text : String(item.value)));
    });
  }

  return { line, bars, empty, PALETTE };
})();
