// The dashboard: reads /dashboard/data every 2 s (with the admin key typed into the page,
// kept for this tab only, outside dev mode) and redraws its charts.
"use strict";
(() => {
  const EVERY_MS = 2000;
  const KEEP = 90;
  const history = [];
  const OUTCOME_COLOR = { sent: "#15803d", temporary: "#b45309", unknown: "#7c3aed",
                          permanent: "#b91c1c", broken: "#111827" };
  const $ = selector => document.querySelector(selector);
  const charts = window.OtpCharts;

  function headers() {
    const key = sessionStorage.getItem("otpgate-admin-key");
    return key ? { authorization: `Bearer ${key}` } : {};
  }

  function rate(now) {
    history.push([now.time, now.requests]);
    while (history.length > KEEP) history.shift();
    const points = [];
    for (let i = 1; i < history.length; i++) {
      const [t0, c0] = history[i - 1], [t1, c1] = history[i];
      points.push([t1, Math.max(0, (c1 - c0) / Math.max(0.001, t1 - t0))]);
    }
    return points;
  }

  function draw(data) {
    const points = rate(data);
    charts.line($("#rps"), points, "req/s");
    $("#rps-now").textContent = points.length ? points[points.length - 1][1].toFixed(1) : "–";
    charts.bars($("#sends"), data.sends.map(s => ({
      label: `${s.driver} · ${s.outcome}`, value: s.value,
      color: OUTCOME_COLOR[s.outcome] })), { empty: "no sends yet", labelWidth: 150 });
    charts.bars($("#queues"), data.queues.map(q => ({
      label: q.subscription, value: q.depth, color: "#0891b2",
      text: `${q.depth} · oldest ${q.oldest_due_age.toFixed(1)} s` })),
      { empty: "no subscriptions", labelWidth: 170 });
    charts.bars($("#conversion"), data.conversion.filter(c => c.requested > 0).map(c => ({
      label: c.country, value: c.rate || 0, color: "#2f5bea",
      text: `${Math.round((c.rate || 0) * 100)} % of ${c.requested}` })),
      { empty: "no codes requested yet", max: 1 });
    charts.bars($("#prefixes"), data.blocked_prefixes.map(p => ({
      label: p.prefix, value: p.value, color: "#b91c1c" })),
      { empty: "no prefix blocked", labelWidth: 110 });
    $("#breakers").replaceChildren(...data.breakers.map(b => {
      const tile = document.createElement("span");
      tile.className = `breaker ${b.state}`;
      tile.textContent = `${b.driver}: ${b.state.replace("_", "-")}`;
      return tile;
    }));
    $("#dead").textContent = String(data.dead_letters);
    $("#updated").textContent = new Date(data.time * 1000).toLocaleTimeString();
    document.body.setAttribute("data-ready", "true");
  }

  async function poll() {
    try {
      const answer = await fetch("/dashboard/data", { headers: headers(), cache: "no-store" });
      if (answer.status === 401 || answer.status === 403) {
        $("#keyform").classList.add("shown");
        $("#status").textContent = "admin key needed"; $("#status").className = "pill down";
        return;
      }
      $("#keyform").classList.remove("shown");
      draw(await answer.json());
      $("#status").textContent = "live"; $("#status").className = "pill live";
    } catch (error) {
      $("#status").textContent = "unreachable"; $("#status").className = "pill down";
    } finally {
      setTimeout(poll, EVERY_MS);
    }
  }

  $("#keyform").addEventListener("submit", event => {
    event.preventDefault();
    sessionStorage.setItem("otpgate-admin-key", $("#keyform").elements.key.value.trim());
    $("#keyform").elements.key.value = "";
  });
  poll();
})();
