/* crisis review page: the replay slider updates the board-at-T panel from the replay API
   without a reload (the form still works as a plain GET without this script). No framework. */
(function () {
  "use strict";
  const form = document.getElementById("replay-form");
  const slider = document.getElementById("replay-slider");
  if (!form || !slider) return;
  const read = (id, fallback) => {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : fallback;
  };
  const times = read("replay-times", []);
  const labels = read("replay-labels", {});
  const units = read("replay-units", {});
  const lang = document.body.dataset.lang || "nb";
  const locale = lang === "en" ? "en-GB" : "nb-NO";
  const fmt = (iso, opts) => new Intl.DateTimeFormat(locale, Object.assign({ timeZone: "Europe/Oslo", hour12: false }, opts)).format(new Date(iso));
  const full = (iso) => fmt(iso, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const short = (iso) => fmt(iso, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  const word = (group, key) => (labels[group] && labels[group][key]) || key || "–";
  const out = document.getElementById("replay-slider-out");
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
    });
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function render(s) {
    $("replay-at").textContent = full(s.at);
    $("replay-seq").textContent = s.seq;
    $("replay-entries").textContent = s.entries;
    const owner = $("replay-owner");
    owner.textContent = units[s.unit] || s.unit; owner.dataset.unit = s.unit;
    $("replay-accountable").textContent = (s.accountable_person || "–") + " (" + (s.accountable_role ? word("role", s.accountable_role) : "–") + ")";
    const level = $("replay-level");
    level.textContent = word("level", s.level); level.dataset.level = s.level; level.className = "level-badge l-" + s.level;
    const sev = $("replay-severity");
    sev.textContent = s.severity; sev.className = "sev sev" + s.severity;
    const st = $("replay-status");
    st.textContent = word("status", s.status); st.dataset.status = s.status;
    $("replay-next").textContent = s.next_update_at ? full(s.next_update_at) : "–";
    $("replay-task-count").textContent = s.tasks.length;
    $("replay-tasks").replaceChildren(...s.tasks.map((t) => el("tr", {
      class: "task task-" + t.status + (t.overdue ? " overdue" : ""), "data-task": String(t.seq), "data-status": t.status, "data-overdue": t.overdue ? "yes" : "no",
    }, [
      el("td", { textContent: String(t.seq) }), el("td", { textContent: t.title }), el("td", { textContent: word("role", t.responsible_role) }),
      el("td", { textContent: t.deadline ? short(t.deadline) : "–" }, t.overdue ? [" ", el("strong", { class: "overdue-tag", textContent: form.dataset.overdue || "!" })] : []),
      el("td", {}, [el("span", { class: "status st-" + t.status, textContent: word("task", t.status) })]),
    ])));
    $("replay-groups").replaceChildren(...s.groups.map((g) => el("tr", { class: "delivery d-" + g.worst, "data-group": g.group, "data-update": g.update_id }, [
      el("td", {}, [word("group", g.group) + " ", el("span", { class: "muted", textContent: g.update_id })]),
      el("td", {}, Object.keys(g.counts).sort().flatMap((k) => [el("span", { class: "status d-" + k, "data-status": k, textContent: word("delivery", k) + ": " + g.counts[k] }), " "])),
    ])));
    $("replay-contacts").replaceChildren(...s.contacts.map((c) => el("li", {}, [c.kind + " · " + c.name + " · ", el("span", { class: "status d-" + c.status, textContent: word("delivery", c.status) })])));
    $("replay-held").replaceChildren(...s.held.map((u) => el("li", { textContent: u })));
    $("replay-panel").dataset.seq = s.seq;
  }

  let pending = 0;
  async function show(n) {
    const at = times[n - 1];
    if (!at) return;
    if (out) out.textContent = n + " / " + times.length;
    const mine = ++pending;
    const r = await fetch(form.dataset.api + "?at=" + encodeURIComponent(at), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok || mine !== pending) return;
    render(await r.json());
    const url = new URL(window.location.href);
    url.searchParams.delete("n"); url.searchParams.set("at", at); url.hash = "replay";
    history.replaceState(null, "", url);
  }
  slider.addEventListener("input", () => show(Number(slider.value)));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); show(Number(slider.value)); });
  window.crisisReview = { show: show, pending: () => pending };
})();
