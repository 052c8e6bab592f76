// Small helpers shared by every page: charts and job progress polling.
window.CLM = {
  chart(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas || !window.Chart) return null;
    config.options = Object.assign({responsive: true, maintainAspectRatio: false, animation: false,
      plugins: {legend: {position: "bottom"}}}, config.options || {});
    return new Chart(canvas, config);
  },
  // An axis with its title (and any other options): every chart says what it counts.
  axis(title, options = {}) {
    return Object.assign({title: {display: true, text: title}}, options);
  },
  // A horizontal axis of money: short ticks (100K, 1.2M), as the full figures ran together
  // on a phone ("100,000200,000300,000").
  moneyAxis(title, options = {}) {
    const short = new Intl.NumberFormat("en", {notation: "compact", maximumFractionDigits: 1});
    return CLM.axis(title, Object.assign({beginAtZero: true, ticks: {callback: (v) => short.format(v)}}, options));
  },
  // An axis of counts (customers, orders): whole-number ticks, never "0.5 customers".
  countAxis(title, options = {}) {
    return CLM.axis(title, Object.assign({ticks: {precision: 0}}, options));
  },
  // A y axis for rates (0.025 is drawn as 2.5%), with its title. Ticks get the decimals their
  // step needs: steps of 0.02% read 0.02%, 0.04%, not 0%, 0%, 0.1% rounded to one decimal.
  percentAxis(title) {
    const percent = (v, index, ticks) => {
      const step = ticks && ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) * 100 : 1;
      let digits = 0;
      while (digits < 4 && Math.abs(step * 10 ** digits - Math.round(step * 10 ** digits)) > 1e-6) digits += 1;
      return (v * 100).toFixed(digits) + "%";
    };
    return {beginAtZero: true, grace: "5%", title: {display: true, text: title}, ticks: {callback: percent}};  // grace: the top bar or whisker does not touch the edge
  },
  // Category ticks that keep the last label (the month under way, marked "(so far)"): Chart.js's
  // own skipping dropped it, and the last point's fall went unexplained. Every step-th label
  // counted back from the last, at most about `most` of them.
  lastLabelKept(labels, most = 12) {
    const step = Math.max(1, Math.ceil(labels.length / most));
    return {autoSkip: false, maxRotation: 50, callback: (value, index) => (labels.length - 1 - index) % step === 0 ? labels[index] : ""};
  },
  // A month's label ("2026-12"), marked "(so far)" while it is under way (the server's
  // `partial`): its few days would read as a fall.
  monthLabel(row) {
    return row.partial ? row.month + " (so far)" : row.month;
  },
  // A tooltip line under a month's values: how many reviews stand behind them (two reviews
  // swing a share from 0% to 100%). `rows` are the chart's months, each with its `n`.
  reviewCount(rows) {
    return (items) => items.length ? rows[items[0].dataIndex].n + " reviews that month" : "";
  },
  // A tooltip line in percent for the datasets on a percent axis (y1), as is for the others.
  percentOnY1(item) {
    return item.dataset.yAxisID === "y1" ? CLM.percentTooltip(item) : item.dataset.label + ": " + item.formattedValue;
  },
  percentTooltip(item) {
    const v = item.raw;
    const show = (x) => (Math.round(x * 1000) / 10) + "%";
    return item.dataset.label + ": " + (Array.isArray(v) ? show(v[0]) + " to " + show(v[1]) : show(v));
  },
  // Ticks for a linear axis of UTC timestamps (ms) from `from` to `until`: calendar steps (days,
  // weeks, months, quarters, years) so that at most `most` labelled ticks fall inside (fewer on a
  // narrow chart, about 80 px each), never one past `until` (read as days to come). Chart.js's own
  // linear ticks fell on odd dates, and blanking those outside the data left two or three labels.
  dateTicks(from, until, most = 6) {
    const DAY = 86400000, start = new Date(from), span = (until - from) / DAY;
    const iso = (v) => new Date(v).toISOString().slice(0, 10);
    const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const month = (v) => MONTHS[new Date(v).getUTCMonth()] + " " + new Date(v).getUTCFullYear();
    let label = iso;
    const values = (width) => {
      const fit = Math.max(3, Math.min(most, Math.floor(width / 80))), out = [];
      const dayStep = [1, 2, 7, 14].find((d) => span / d <= fit);
      label = iso;
      if (dayStep) {
        const first = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()) + DAY;
        for (let v = first; v <= until; v += dayStep * DAY) out.push(v);
      } else {
        const step = [1, 2, 3, 6, 12, 24, 60].find((m) => span / 30.44 / m <= fit) || 120;
        label = step >= 12 ? (v) => String(new Date(v).getUTCFullYear()) : month;
        // the first month start after `from` on the step's grid (quarters start in Jan, Apr, Jul, Oct)
        let y = start.getUTCFullYear(), m = Math.ceil((start.getUTCMonth() + 1) / step) * step;
        if (step >= 12) { y = Math.ceil((y + 1) / (step / 12)) * (step / 12); m = 0; }
        for (let v = Date.UTC(y, m, 1); v <= until; m += step, v = Date.UTC(y, m, 1)) out.push(v);
      }
      return out.length ? out : [from];
    };
    return {afterBuildTicks: (axis) => { axis.ticks = values(axis.width).map((value) => ({value})); },
            ticks: {autoSkip: false, maxRotation: 0, callback: (v) => label(v)}};
  },
  // A long axis label ("Lapsed low-value one-time Tents buyers") as lines of at most
  // `width` characters, so a phone's narrow chart does not clip it; tooltips keep the full text.
  wrapLabel(text, width = 26) {
    return String(text).split(" ").reduce((lines, word) => {
      const last = lines[lines.length - 1];
      if (last && (last + " " + word).length <= width) lines[lines.length - 1] = last + " " + word; else lines.push(word);
      return lines;
    }, []);
  },
  pollJobs() {
    document.querySelectorAll("[data-poll]").forEach((node) => {
      const url = node.dataset.poll;
      const tick = async () => {
        let job;
        try {
          const response = await fetch(url, {headers: {Accept: "application/json"}});
          if (response.status === 404) {  // the shop was switched in another tab: this job is not the page's shop's any more
            const message = node.querySelector("[data-field=message]");
            if (message) message.textContent = "Progress stopped: you switched shop in another tab. Reload the page.";
            return;
          }
          job = await response.json();
        } catch (e) { return setTimeout(tick, 2000); }
        const bar = node.querySelector("[data-field=bar]");
        if (bar) bar.style.width = job.percent + "%";
        const progress = node.querySelector("[role=progressbar]");
        if (progress) progress.setAttribute("aria-valuenow", job.percent);
        const state = node.querySelector("[data-field=state]");
        if (state) { state.textContent = job.state_label; state.className = "state state-" + job.state; }
        const message = node.querySelector("[data-field=message]");
        if (message) message.textContent = job.message;
        if (job.finished) { if (node.dataset.reload) window.location.reload(); return; }
        setTimeout(tick, 700);
      };
      tick();
    });
  },
  // A form with data-preview="<url>" (a campaign's audience, a saved segment) shows the live
  // size of what it selects: on each change it asks the url with the form's fields and writes
  // the answer into its card's [data-preview-part] elements: size, value, note.
  livePreviews() {
    document.querySelectorAll("form[data-preview]").forEach((form) => {
      const box = form.closest(".card") || document;
      const part = (name) => box.querySelector("[data-preview-part=" + name + "]") || {};
      let latest = 0;  // replies can arrive out of order: only the newest request's is shown
      const refresh = async () => {
        const params = new URLSearchParams(new FormData(form));
        params.delete("csrfmiddlewaretoken");
        const request = ++latest;
        try {
          const data = await (await fetch(form.dataset.preview + "?" + params, {headers: {Accept: "application/json"}})).json();
          if (request !== latest) return;
          // With a refused filter the count leaves it out: the size says so, beside the note naming it.
          part("size").textContent = data.stale ? "—" : data.size.toLocaleString() + " customers" + (data.partial ? " without the refused filters" : "");
          part("value").textContent = data.stale ? "" : "value at risk " + form.dataset.currency + " " + Math.round(data.value_at_risk).toLocaleString();
          part("note").textContent = data.stale || data.note || "";
        } catch (e) { /* keep the last preview */ }
      };
      // Counted as the merchant types (a short pause first, so each keystroke is not a
      // request) and at once when a box is ticked or a field is left.
      let typing;
      form.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refresh, 300); });
      form.addEventListener("change", () => { clearTimeout(typing); refresh(); });
      refresh();
    });
  },
};
document.addEventListener("DOMContentLoaded", () => { CLM.pollJobs(); CLM.livePreviews(); });

// Forms that ask before they submit (data-confirm, and the scoring form's data-confirm-as-of),
// and selects that submit when changed (data-autosubmit). Handled here rather than in
// onsubmit/onchange attributes: the Content-Security-Policy runs no inline handler.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if ((form.dataset.confirm && !confirm(form.dataset.confirm)) || (form.hasAttribute("data-confirm-as-of") && !confirmAsOf(form))) {
    event.preventDefault();  // a cancelled question asks no other
  }
});
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});
// The phone menu is a checkbox, which Space toggles; Enter, which a keyboard user presses on
// a menu button, did nothing.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches("#nav-toggle")) {
    event.preventDefault();
    event.target.click();
  }
});

// Scoring long after the last order counts every customer as lapsed: ask first (the server warns as well).
function confirmAsOf(form) {
  const asOf = form.elements.as_of.value, last = form.dataset.lastOrder;
  const days = (Date.parse(asOf) - Date.parse(last)) / 86400000;
  return !(days > Number(form.dataset.staleAfter)) || confirm(`Your last order is on ${last}: scoring as of ${asOf} will count every customer as lapsed. Score as of ${asOf} anyway?`);
}
