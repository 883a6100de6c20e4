/* crisis board: live updates over /ws/board, forms posting JSON to the API, Oslo clocks.
   No framework, no build. window.crisisBoard exposes the socket for tests and operators. */
(function () {
  "use strict";
  const TZ = "Europe/Oslo";
  const body = document.body;
  const lang = body.dataset.lang || "nb";
  const locale = lang === "en" ? "en-GB" : "nb-NO";
  const fmt = new Intl.DateTimeFormat(locale, { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const fmtDate = new Intl.DateTimeFormat(locale, { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });

  function timeEl(iso, withDate) {
    const d = new Date(iso);
    const t = document.createElement("time");
    t.dateTime = d.toISOString();
    t.title = "UTC " + d.toISOString().replace("T", " ").slice(0, 19);
    t.textContent = (withDate ? fmtDate : fmt).format(d);
    return t;
  }

  /* Oslo wall-clock "YYYY-MM-DDTHH:MM" → UTC ISO, whatever the browser's own zone. */
  function osloToUtc(local) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
    if (!m) return local;
    const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    const offsetAt = (ms) => {
      const p = {};
      new Intl.DateTimeFormat("en-US", { timeZone: TZ, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
        .formatToParts(new Date(ms)).forEach((x) => { p[x.type] = x.value; });
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute) - ms;
    };
    let ms = guess - offsetAt(guess);
    ms = guess - offsetAt(ms);
    return new Date(ms).toISOString();
  }

  /* --- clocks and countdowns ---------------------------------------------------------- */
  function tick() {
    const clock = document.getElementById("clock");
    if (clock) clock.textContent = fmt.format(new Date());
    document.querySelectorAll("[data-countdown]").forEach((el) => {
      const iso = el.dataset.countdown;
      if (!iso) { el.textContent = el.dataset.none || "–"; el.classList.remove("overdue"); return; }
      let s = Math.round((new Date(iso) - Date.now()) / 1000);
      const overdue = s < 0; s = Math.abs(s);
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      // One format everywhere: h:mm:ss (0:24:39, 5:59:54), days past 48 hours.
      let txt = h + ":" + String(m).padStart(2, "0") + ":" + String(sec).padStart(2, "0");
      if (h >= 48) txt = Math.floor(h / 24) + (lang === "en" ? " d " : " d ") + (h % 24) + (lang === "en" ? " h" : " t");
      el.textContent = overdue ? (el.dataset.overdue || "−") + " " + txt : (el.dataset.in ? el.dataset.in + " " : "") + txt;
      el.classList.toggle("overdue", overdue);
    });
  }
  setInterval(tick, 1000); tick();

  /* --- live feed ---------------------------------------------------------------------- */
  const incidentId = body.dataset.incident || null;
  const labelsEl = document.getElementById("kind-labels");
  const kindLabels = labelsEl ? JSON.parse(labelsEl.textContent) : {};
  const fieldsEl = document.getElementById("personal-fields");
  const personalFields = new Set(fieldsEl ? JSON.parse(fieldsEl.textContent) : []);
  // [field, value] of every personal reference at any depth (crisis.privacy.personal_items).
  function personalItems(data) {
    const out = [];
    const leaves = (v) => v === null || v === undefined || v === "" ? [] : Array.isArray(v) ? v.flatMap(leaves) : typeof v === "object" ? Object.values(v).flatMap(leaves) : [String(v)];
    const walk = (v) => {
      if (Array.isArray(v)) { v.forEach(walk); return; }
      if (!v || typeof v !== "object") return;
      for (const [k, x] of Object.entries(v)) {
        if (personalFields.has(k)) leaves(x).forEach((leaf) => out.push([k, leaf])); else walk(x);
      }
    };
    walk(data);
    return out;
  }
  const state = { resume: parseInt(body.dataset.resume || "0", 10), socket: null, paused: false, delay: 300, seen: new Set(), received: 0 };
  const live = document.getElementById("live");
  function setLive(on) { if (live) { live.className = "live " + (on ? "on" : "off"); live.textContent = on ? live.dataset.on : live.dataset.off; } }

  // One debounce timer per target: a log refresh must not cancel a panels refresh.
  const refreshTimers = {};
  function refresh(url, targetId) {
    clearTimeout(refreshTimers[targetId]);
    refreshTimers[targetId] = setTimeout(async () => {
      const r = await fetch(url, { credentials: "same-origin" });
      if (!r.ok) return;
      const target = document.getElementById(targetId);
      if (target) { target.innerHTML = await r.text(); bindForms(target); tick(); if (targetId === "overview-body") triage.check(); }
    }, 250);
  }
  /* The incident's log is re-read from the server (deliveries folded, filters kept). */
  function refreshLog() {
    const box = document.getElementById("log-body");
    if (box && box.dataset.src) refresh(box.dataset.src, "log-body");
  }
  const receipt = (e) => e.kind === "message" && e.actor === "system:notifiers" && e.data && "status" in e.data;

  function addEntry(e) {
    const list = document.getElementById("timeline");
    if (!list || list.querySelector('[data-id="' + e.id + '"]')) return;
    const li = document.createElement("li");
    li.className = "entry new k-" + e.kind; li.dataset.id = e.id; li.dataset.seq = e.seq;
    const when = document.createElement("div"); when.className = "when"; when.appendChild(timeEl(e.at));
    const what = document.createElement("div"); what.className = "what";
    const kind = document.createElement("span"); kind.className = "kind"; kind.textContent = kindLabels[e.kind] || e.kind;
    const text = document.createElement("span"); text.className = "text"; text.textContent = (e.kind === "task" && e.data && e.data.title) ? e.data.title : e.text;
    what.append(kind, " ", text);
    for (const [field, value] of personalItems(e.data)) { const s = document.createElement("span"); s.className = "inmate"; s.title = field; s.textContent = value; what.appendChild(s); }
    const actor = document.createElement("div"); actor.className = "actor muted"; actor.textContent = "#" + e.seq + " · " + e.actor;
    what.appendChild(actor);
    li.append(when, what);
    // Newest first; entries can arrive out of id order (late commits), so place by seq.
    let before = null;
    for (const other of list.children) { if (parseInt(other.dataset.seq, 10) < e.seq) { before = other; break; } }
    list.insertBefore(li, before);
  }

  const levelEl = document.getElementById("level-labels");
  const levelLabels = levelEl ? JSON.parse(levelEl.textContent) : {};
  const unitEl = document.getElementById("unit-names");
  const unitNames = unitEl ? JSON.parse(unitEl.textContent) : {};
  /* The incident header follows every change: level, severity, owner, status, next update. */
  function onIncident(i) {
    const cd = document.getElementById("countdown");
    if (cd) cd.dataset.countdown = i.next_update_at || "";
    const sev = document.getElementById("incident-severity");
    if (sev) { sev.textContent = i.severity; sev.className = "sev big sev" + i.severity; }
    const sevText = document.getElementById("incident-severity-text");
    if (sevText) sevText.textContent = i.severity + " / 5";
    const level = document.getElementById("incident-level");
    if (level && i.level && level.dataset.level !== i.level) {
      level.dataset.level = i.level; level.className = "level-badge l-" + i.level;
      level.textContent = levelLabels[i.level] || i.level;
    }
    const owner = document.getElementById("incident-owner");
    if (owner && i.unit) owner.textContent = unitNames[i.unit] || i.unit;
    const st = document.getElementById("incident-status");
    if (st && i.status && st.dataset[i.status]) {
      const was = st.dataset.status; st.textContent = st.dataset[i.status];
      // Closing or reopening changes what the page offers (forms, countdown): reload it.
      if (was && was !== i.status) { st.dataset.status = i.status; location.reload(); }
    }
  }

  function handle(msg) {
    if (typeof msg.resume === "number" && msg.resume > state.resume) state.resume = msg.resume;
    if (msg.type === "resync") {
      if (incidentId) { refresh("/incidents/" + incidentId + "/panels", "panels"); refreshLog(); }
      else if (body.dataset.page === "overview") refresh("/board/overview" + location.search, "overview-body");
      return;
    }
    if (msg.type === "sitrep_approved") { if (body.dataset.page === "ministry") location.reload(); return; }
    if (msg.type !== "entry") return;
    if (state.seen.has(msg.seq)) return;
    state.seen.add(msg.seq); state.received += 1;
    if (incidentId && msg.entry.incident_id === incidentId) {
      const list = document.getElementById("timeline");
      if (list && list.dataset.filtered !== "true" && !receipt(msg.entry)) addEntry(msg.entry);
      refreshLog(); onIncident(msg.incident);
      if (msg.topic !== "entry" || msg.entry.kind === "cooperation_contact" || msg.entry.kind === "decision") refresh("/incidents/" + incidentId + "/panels", "panels");
    } else if (body.dataset.page === "overview") {
      const known = document.querySelector('[data-incident="' + msg.incident.id + '"]');
      if (msg.topic === "incident" || !known) refresh("/board/overview" + location.search, "overview-body");
    }
  }

  function connect() {
    if (state.paused || !live) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/board?since=" + state.resume);
    state.socket = ws;
    ws.onopen = () => { state.delay = 300; setLive(true); };
    ws.onmessage = (ev) => { try { handle(JSON.parse(ev.data)); } catch (err) { console.error(err); } };
    ws.onclose = (ev) => {
      setLive(false);
      if (ev.code === 4401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (state.socket === ws) state.socket = null;
      if (!state.paused) { setTimeout(connect, state.delay); state.delay = Math.min(state.delay * 2, 5000); }
    };
  }

  window.crisisBoard = {
    state,
    /* Drop the connection (as a network failure would); it reconnects by itself. */
    drop() { if (state.socket) state.socket.close(); },
    /* Stay disconnected until resume() — lets a test write entries while offline. */
    pause() { state.paused = true; if (state.socket) state.socket.close(); },
    resume() { state.paused = false; connect(); },
    connected() { return !!state.socket && state.socket.readyState === WebSocket.OPEN; },
  };

  /* --- overview: a new severe incident marks a hidden tab and may beep ------------------ */
  const triage = (function () {
    const KEY = "crisis.sound";
    const baseTitle = document.title;
    const known = new Set();
    let unseen = 0, audio = null;
    const rows = () => Array.from(document.querySelectorAll("[data-incident][data-severity]"));
    const severe = (el) => parseInt(el.dataset.severity, 10) >= 4;
    const soundOn = () => { try { return localStorage.getItem(KEY) === "on"; } catch (_) { return false; } };
    function beep() {
      api.beeps += 1;
      try {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return;
        audio = audio || new Ctx();
        if (audio.state === "suspended") audio.resume();
        const osc = audio.createOscillator(), gain = audio.createGain();
        osc.type = "sine"; osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, audio.currentTime);
        gain.gain.exponentialRampToValueAtTime(0.3, audio.currentTime + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.6);
        osc.connect(gain).connect(audio.destination);
        osc.start(); osc.stop(audio.currentTime + 0.65);
      } catch (_) { /* no audio device: the title still tells */ }
    }
    function check() {
      const fresh = rows().filter((el) => severe(el) && !known.has(el.dataset.incident));
      rows().forEach((el) => known.add(el.dataset.incident));
      if (!fresh.length) return;
      api.alerts += fresh.length;
      if (document.hidden) {
        unseen += fresh.length;
        const word = lang === "en" ? "new severe" : "ny alvorlig";
        document.title = "(" + unseen + ") ⚠ " + word + " — " + baseTitle;
      }
      if (soundOn()) beep();
    }
    function setSound(on, clicked) {
      try { localStorage.setItem(KEY, on ? "on" : "off"); } catch (_) { /* private mode */ }
      const b = document.getElementById("sound-toggle");
      if (b) { b.setAttribute("aria-pressed", on ? "true" : "false"); b.textContent = on ? b.dataset.on : b.dataset.off; }
      if (on && clicked) beep();  // a click is the gesture that lets the page play sound
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) { unseen = 0; document.title = baseTitle; } });
    const api = { check, setSound, soundOn, beeps: 0, alerts: 0, known };
    rows().forEach((el) => known.add(el.dataset.incident));
    const toggle = document.getElementById("sound-toggle");
    if (toggle) { setSound(soundOn(), false); toggle.addEventListener("click", () => setSound(!soundOn(), true)); }
    return api;
  })();
  window.crisisTriage = triage;

  /* --- forms: JSON to the API, errors shown where they belong -------------------------- */
  function formJson(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "checkbox") { if (el.checked) out[el.name] = true; continue; }
      let v = el.value;
      if (v === "" || v == null) continue;
      if (el.hasAttribute("data-oslo")) v = osloToUtc(v);
      if (el.hasAttribute("data-int")) v = parseInt(v, 10);
      if (el.hasAttribute("data-bool")) v = v === "true";
      if (el.hasAttribute("data-float")) v = parseFloat(v);
      if (el.hasAttribute("data-list")) v = v.split("\n").map((s) => s.trim()).filter(Boolean);
      out[el.name] = v;
    }
    return out;
  }

  function showErrors(form, errors) {
    const box = form.querySelector(".form-errors");
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    if (!box) return;
    box.textContent = "";
    for (const e of errors) {
      const p = document.createElement("div");
      p.className = "form-error"; p.dataset.field = e.field || "";
      p.textContent = (e.field ? e.field + ": " : "") + e.message;
      box.appendChild(p);
      const el = e.field && form.elements.namedItem(e.field);
      if (el && el.setAttribute) el.setAttribute("aria-invalid", "true");
    }
  }

  /* A form whose fields differ from what the page was rendered with. */
  function dirty(form) {
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "checkbox" ? el.checked !== el.defaultChecked : el.value !== el.defaultValue) return true;
    }
    return false;
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  /* A CloudEvent from a form: fields named data.X go into data, the rest into the envelope. */
  function cloudEvent(form) {
    const env = { specversion: "1.0", id: newId(), source: form.dataset.source, type: form.dataset.cloudevent,
      time: new Date().toISOString(), datacontenttype: "application/json" };
    const data = {};
    for (const [k, v] of Object.entries(formJson(form))) { if (k.startsWith("data.")) data[k.slice(5)] = v; else env[k] = v; }
    if (env.unit) env.subject = env.unit;
    env.data = data;
    return env;
  }

  /* The request a form sends: JSON of its fields, a CloudEvent, or a raw document (CAP). */
  function request(form) {
    if (form.dataset.raw) {
      const ex = form.elements.namedItem("exercise");
      const q = ex && ex.value ? "?exercise=" + encodeURIComponent(ex.value) : "";
      return [form.dataset.api + q, form.dataset.raw, form.elements.namedItem("xml").value];
    }
    const body = form.dataset.cloudevent ? cloudEvent(form) : formJson(form);
    return [form.dataset.api, "application/json", JSON.stringify(body)];
  }

  function showResult(form, payload) {
    const out = form.querySelector(".form-result");
    const parts = [form.dataset.ok || (lang === "en" ? "Saved" : "Lagret")];
    if (payload && payload.accepted && payload.accepted.length) parts.push(payload.accepted.join(", "));
    if (payload && payload.units && payload.units.length) parts.push("→ " + payload.units.join(", "));
    if (payload && payload.note) parts.push(payload.note);
    const ok = document.createElement("span"); ok.className = "form-ok"; ok.textContent = parts.join(" · ");
    if (out) { out.textContent = ""; out.appendChild(ok); return; }
    const button = form.querySelector("button");
    if (button) button.after(ok);
  }

  async function submit(ev) {
    ev.preventDefault();
    const form = ev.currentTarget;
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    showErrors(form, []);
    form.querySelectorAll(".form-ok").forEach((x) => x.remove());
    const result = form.querySelector(".form-result"); if (result) result.textContent = "";
    try {
      let [url, type, sent] = request(form);
      // Approving with unsaved edits: save them as a new version first, then approve that
      // version; never the old text silently (a refused save stops the approval).
      const first = form.dataset.saveFirst && document.getElementById(form.dataset.saveFirst);
      if (first && dirty(first)) {
        const saved = await fetch(first.dataset.api, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "Accept": "application/json" },
          body: JSON.stringify(formJson(first)),
        });
        let out = null; try { out = await saved.json(); } catch (_) { out = null; }
        if (!saved.ok || !out || !out.current) {
          const errors = (out && out.errors) || [{ field: "", message: (out && out.detail) || (saved.status + " " + saved.statusText) }];
          showErrors(first, errors);
          showErrors(form, [{ field: "", message: form.dataset.unsavedError || "unsaved edits were not saved" }]);
          return;
        }
        const body = JSON.parse(sent);
        body.version = out.current.version;
        sent = JSON.stringify(body);
      }
      const r = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": type, "Accept": "application/json" },
        body: sent,
      });
      let payload = null; try { payload = await r.json(); } catch (_) { payload = null; }
      if (!r.ok) {
        let errors = payload && payload.errors;
        if (!errors) errors = [{ field: "", message: (payload && payload.detail) || (r.status + " " + r.statusText) }];
        showErrors(form, errors);
        return;
      }
      if (form.dataset.redirect && payload && payload.id) { location.href = form.dataset.redirect.replace("{id}", payload.id); return; }
      if (form.hasAttribute("data-reload")) { location.reload(); return; }
      if (!form.dataset.raw) form.reset();
      showResult(form, payload);
    } catch (err) {
      showErrors(form, [{ field: "", message: String(err) }]);
    } finally { if (button) button.disabled = false; }
  }

  function bindForms(root) { root.querySelectorAll("form[data-api]").forEach((f) => { if (!f.dataset.bound) { f.dataset.bound = "1"; f.addEventListener("submit", submit); } }); }

  /* A wrong password answers 401 JSON; show it on the form instead of leaving the page. */
  const login = document.getElementById("login-form");
  if (login) {
    login.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await fetch("/login", { method: "POST", body: new URLSearchParams(new FormData(login)), credentials: "same-origin" });
      if (r.ok) { location.href = r.url; return; }
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).detail || msg; } catch (_) { /* keep the status */ }
      showErrors(login, [{ field: "", message: msg }]);
    });
  }

  /* A scroll box must be reachable by keyboard (axe: scrollable-region-focusable). */
  document.querySelectorAll(".timeline").forEach((el) => { if (!el.hasAttribute("tabindex")) el.tabIndex = 0; });

  bindForms(document); connect();
})();
