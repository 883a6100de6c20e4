/* The exercise controller's page: confirmation of "end", removing a participant (DELETE),
   the manual inject's example per type, and a poll of GET /api/v1/exercises/{id} (and the
   expected actions as the evaluation judges them) that updates the states without a reload. */
(function () {
  "use strict";
  const body = document.body;
  const exerciseId = body.dataset.exercise;
  const lang = body.dataset.lang || "nb";
  const labelsEl = document.getElementById("ex-labels");
  const labels = labelsEl ? JSON.parse(labelsEl.textContent) : {};
  const hm = new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "nb-NO", { timeZone: "Europe/Oslo", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

  /* Runs before board.js's own submit handler (capture on the document). */
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); ev.stopPropagation(); }
  }, true);

  document.querySelectorAll("form[data-delete]").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const box = form.querySelector(".form-errors");
      const r = await fetch(form.dataset.delete, { method: "DELETE", credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (r.ok) { location.reload(); return; }
      let msg = r.status + " " + r.statusText;
      try { const p = await r.json(); msg = (p.errors || []).map((e) => e.message).join("\n") || p.detail || msg; } catch (_) { /* keep the status */ }
      if (box) box.textContent = msg;
    });
  });

  const examples = { sensor: 'event: fire_alarm\ndata: {zone: "A2", detail: "Røykdetektor A2"}\n', report: 'category: brann\nplace: "Avdeling A"\nwhat: "Røyk i gangen"\n', media: 'title: "Brann i fengsel"\nurl: "https://example.invalid/brann"\n', cap: 'xml: |\n  <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">…</alert>\n', text: 'text: "Les opp: …"\n' };
  const type = document.getElementById("manual-type");
  const fields = document.getElementById("manual-fields");
  if (type && fields) {
    type.addEventListener("change", () => {
      const untouched = Object.values(examples).some((x) => x.trim() === fields.value.trim()) || !fields.value.trim();
      if (untouched && examples[type.value]) fields.value = examples[type.value];
    });
  }

  if (!exerciseId) return;
  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + String(sec).padStart(2, "0") : m + ":" + String(sec).padStart(2, "0");
  }
  function setText(id, value) { const el = document.getElementById(id); if (el && value !== undefined) el.textContent = value === null ? "–" : String(value); }

  function showExpected(items) {
    let met = 0, missed = 0;
    for (const x of items || []) {
      const row = document.querySelector('[data-expected="' + (x.id || x.expected_id) + '"]');
      const st = x.met === true ? "met" : x.met === false ? "missed" : "open";
      if (st === "met") met += 1; else if (st === "missed") missed += 1;
      if (!row) continue;
      row.className = "expected exp-" + st; row.dataset.status = st;
      const cell = row.querySelector(".exp-state"); if (cell) cell.textContent = labels[st] || st;
      const at = x.actual_seconds;
      const actual = row.querySelector(".exp-actual");
      if (actual && at !== undefined && at !== null) actual.textContent = typeof at === "number" ? clock(at) : String(at);
    }
    return { met, missed };
  }

  async function poll() {
    let r;
    try { r = await fetch("/api/v1/exercises/" + encodeURIComponent(exerciseId), { credentials: "same-origin", headers: { "Accept": "application/json" } }); } catch (_) { return; }
    if (!r.ok) return;
    const x = await r.json();
    if (x.state !== body.dataset.state) { location.reload(); return; }
    const p = x.progress || {};
    setText("ex-clock", clock(p.scenario_seconds));
    if (p.injects) { setText("ex-sent", p.injects.sent); setText("ex-total", p.injects.total); setText("ex-due", p.injects.due); }
    apiCounts = !!p.expected && p.expected.met !== null && p.expected.met !== undefined;
    if (apiCounts) { setText("ex-met", p.expected.met); setText("ex-missed", p.expected.missed); }
    let unknown = false;
    for (const i of x.injects || []) {
      const row = document.querySelector('[data-inject="' + i.inject_id + '"]');
      if (!row) { unknown = true; continue; }
      if (row.dataset.state === i.state) {
        if (i.state === "pending" && x.state === "running") {
          const due = new Date(Date.now() + Math.max(0, i.due_offset_seconds - p.scenario_seconds) / x.speed * 1000);
          row.querySelector(".inj-wall").textContent = "≈ " + hm.format(due);
        }
        continue;
      }
      row.dataset.state = i.state; row.className = "inject inj-" + i.state;
      row.querySelector(".inj-state").textContent = labels[i.state] || i.state;
      row.querySelector(".inj-wall").textContent = i.sent_at ? hm.format(new Date(i.sent_at)) : "–";
      if (i.state !== "pending") row.querySelectorAll("form.fire").forEach((f) => f.remove());
    }
    if (unknown && !document.querySelector("textarea:focus, input:focus")) location.reload();
    if (Array.isArray(x.expected)) { const c = showExpected(x.expected); if (!apiCounts) { setText("ex-met", c.met); setText("ex-missed", c.missed); } }
  }

  let apiCounts = false;
  async function loop() {
    await poll();
    setTimeout(loop, body.dataset.state === "ended" ? 10000 : 1500);
  }
  window.crisisExercise = { poll };
  loop();
})();
