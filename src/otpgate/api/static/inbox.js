// The live dev inbox: messages arrive over server-sent events (/dev/inbox/events), are
// grouped in a thread per recipient, and show their code highlighted with copy and
// verify buttons. Every value is put in the page as text, never as HTML.
"use strict";
(() => {
  const CODE = /(?<!\d)\d{4,10}(?!\d)/;
  const messages = new Map();
  const threads = new Map();
  let selected = null;

  const $ = selector => document.querySelector(selector);

  function el(tag, attrs, ...children) {
    const made = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") made.className = value;
      else if (key.startsWith("data-") || key.startsWith("aria-")) made.setAttribute(key, value);
      else made[key] = value;
    }
    made.append(...children);
    return made;
  }

  function when(iso) {
    const at = new Date(iso);
    return isNaN(at) ? iso : at.toLocaleTimeString();
  }

  function highlighted(body) {
    const found = CODE.exec(body);
    if (!found) return [[body], null];
    return [[body.slice(0, found.index), el("mark", { class: "code" }, found[0]),
             body.slice(found.index + found[0].length)], found[0]];
  }

  async function verify(message, code, button, result) {
    button.disabled = true;
    result.className = "result";
    result.textContent = "checking…";
    try {
      const answer = await fetch(`/v1/otp/${encodeURIComponent(message.otp_id)}/verify`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ code }) });
      const body = await answer.json();
      const ok = answer.ok && body.valid;
      result.className = "result " + (ok ? "approved" : "refused");
      result.textContent = ok ? "approved ✓" : (body.status || body.detail || "refused");
      result.setAttribute("data-status", ok ? "approved" : (body.status || "error"));
    } catch (error) {
      result.className = "result refused";
      result.textContent = "could not reach otpgate";
    } finally {
      button.disabled = false;
    }
  }

  function card(message, fresh) {
    const [parts, code] = highlighted(message.body);
    const result = el("span", { class: "result", "aria-live": "polite" });
    const actions = el("div", { class: "actions" });
    if (code) {
      const copy = el("button", { type: "button", class: "copy", textContent: "Copy code" });
      copy.addEventListener("click", async () => {
        try { await navigator.clipboard.writeText(code); copy.textContent = "Copied"; }
        catch (error) { copy.textContent = code; }
        setTimeout(() => { copy.textContent = "Copy code"; }, 1500);
      });
      const check = el("button", { type: "button", class: "verify primary",
                                   textContent: "Verify" });
      check.addEventListener("click", () => verify(message, code, check, result));
      actions.append(copy, check, result);
    }
    return el("article", { class: "message" + (fresh ? " fresh" : ""),
                           "data-id": message.id, "data-otp-id": message.otp_id,
                           "data-to": message.to },
      el("header", {},
         el("span", { class: "channel " + message.channel }, message.channel),
         el("strong", {}, message.to), el("span", { class: "muted" }, when(message.sent_at)),
         el("span", { class: "spacer" }), el("code", { class: "muted" }, message.otp_id)),
      ...(message.subject ? [el("div", {}, el("strong", {}, message.subject))] : []),
      el("div", { class: "body" }, ...parts), actions);
  }

  function renderThreads() {
    const list = $("#threads");
    const all = el("li", { "aria-selected": String(selected === null), "data-to": "" },
                   el("span", { class: "who" }, "All recipients"),
                   el("span", { class: "muted" }, `${messages.size} message(s)`));
    all.addEventListener("click", () => select(null));
    const items = [...threads.entries()].sort((a, b) => b[1].last.localeCompare(a[1].last));
    list.replaceChildren(all, ...items.map(([to, thread]) => {
      const item = el("li", { "aria-selected": String(selected === to), "data-to": to },
                      el("span", { class: "who" }, to),
                      el("span", { class: "muted" },
                         `${thread.count} · ${[...thread.channels].join(", ")} · ` +
                         when(thread.last)));
      item.addEventListener("click", () => select(to));
      return item;
    }));
  }

  function renderMessages(freshId) {
    const shown = [...messages.values()]
      .filter(m => selected === null || m.to === selected)
      .sort((a, b) => b.sent_at.localeCompare(a.sent_at));
    const box = $("#messages");
    if (!shown.length) {
      box.replaceChildren(el("p", { class: "empty" },
        "No messages yet. Send a code with the form above, or POST /v1/otp."));
      return;
    }
    box.replaceChildren(...shown.map(m => card(m, m.id === freshId)));
  }

  function select(to) {
    selected = to;
    renderThreads();
    renderMessages(null);
  }

  function add(message, live) {
    if (messages.has(message.id)) return;
    messages.set(message.id, message);
    const thread = threads.get(message.to) || { count: 0, channels: new Set(), last: "" };
    thread.count += 1;
    thread.channels.add(message.channel);
    if (message.sent_at > thread.last) thread.last = message.sent_at;
    threads.set(message.to, thread);
    renderThreads();
    renderMessages(live ? message.id : null);
  }

  function connect() {
    const status = $("#status");
    const source = new EventSource("/dev/inbox/events");
    let first = true;
    source.addEventListener("open", () => {
      status.textContent = "live"; status.className = "pill live";
    });
    source.addEventListener("message", event => add(JSON.parse(event.data), !first));
    source.addEventListener("caught-up", () => { first = false; });
    source.addEventListener("error", () => {
      status.textContent = "reconnecting…"; status.className = "pill down";
    });
  }

  function tryIt() {
    const form = $("#try");
    const output = $("#try-result");
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const to = form.elements.to.value.trim();
      const channel = form.elements.channel.value;
      const body = channel ? { to, channel } : { to };
      output.textContent = "sending…";
      try {
        const answer = await fetch("/v1/otp", { method: "POST",
          headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        const reply = await answer.json();
        output.textContent = answer.ok
          ? `${reply.id}: ${reply.status} on ${reply.channels.join(", ")} — it shows below`
          : `${answer.status}: ${reply.detail}`;
        output.className = answer.ok ? "" : "error";
        if (answer.ok) select(null);
      } catch (error) {
        output.textContent = "could not reach otpgate";
        output.className = "error";
      }
    });
  }

  document.documentElement.classList.add("js");
  renderThreads();
  renderMessages(null);
  tryIt();
  connect();
})();
