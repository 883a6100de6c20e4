/* Notifications on the board: forms posting JSON to the notifications API (dotted names
   nest, "facts.known" → {"facts": {"known": …}}), the API's refusal shown at the form. */
(function () {
  "use strict";
  if (window.crisisMessages) return;
  window.crisisMessages = true;
  const TZ = "Europe/Oslo";

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

  function body(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      let v;
      if (el.type === "checkbox") { if (!el.checked) continue; v = true; } else { v = el.value; }
      if (v === "" || v == null) continue;
      if (el.hasAttribute("data-oslo")) v = osloToUtc(v);
      const path = el.name.split(".");
      let box = out;
      for (const key of path.slice(0, -1)) box = box[key] = box[key] || {};
      box[path[path.length - 1]] = v;
    }
    return out;
  }

  function show(form, errors) {
    const box = form.querySelector(".form-errors");
    if (!box) return;
    box.textContent = "";
    for (const e of errors) {
      const p = document.createElement("div");
      p.className = "form-error refusal"; p.setAttribute("role", "alert");
      p.dataset.field = e.field || ""; p.dataset.principle = e.principle || "";
      p.textContent = (e.principle ? e.principle + ": " : "") + e.message;
      box.appendChild(p);
    }
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.msgApi) return;
    ev.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    show(form, []);
    try {
      const r = await fetch(form.dataset.msgApi, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body(form)),
      });
      let payload = null; try { payload = await r.json(); } catch (_) { payload = null; }
      if (!r.ok) {
        let errors = payload && payload.errors;
        if (!errors) errors = [{ field: "", message: (payload && payload.detail) || (r.status + " " + r.statusText) }];
        show(form, errors);
        return;
      }
      location.reload();
    } catch (err) {
      show(form, [{ field: "", message: String(err) }]);
    } finally { if (button) button.disabled = false; }
  });
})();
