// adplg report: the index table (sorting, filtering), the video page (score curve, player seeking, alerts table)
// and reviewers' verdicts (kept in localStorage, downloaded as JSON for `adplg calibrate --verdicts`).
// Plain JavaScript, no network: the data comes from report-meta.js, index-data.js and the page's inline JSON.
"use strict";

(function () {
  const REPORT = window.ADPLG_REPORT || {};
  const STORE_KEY = "adplg-verdicts:" + (REPORT.report_id || "unknown");
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------------------------------------- helpers
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function clock(seconds) {
    // 75.3 -> "1:15.3", 3725 -> "1:02:05.0"
    const s = Math.max(0, seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = (s % 60).toFixed(1).padStart(4, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
  }

  // ---------------------------------------------------------------------------------------------- verdicts
  // {"<video>|<start>|<end>": {video, start_s, end_s, verdict: "true_alert"|"false_alert", ...}}
  let storageProblem = null;

  function loadVerdicts() {
    try {
      return JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch (err) {
      storageProblem = "verdicts cannot be kept in this browser's storage (" + err.name + "); download them " +
        "before leaving the page";
      return {};
    }
  }

  const verdicts = loadVerdicts();

  function saveVerdicts() {
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(verdicts));
    } catch (err) {
      storageProblem = "verdicts cannot be kept in this browser's storage (" + err.name + "); download them " +
        "before leaving the page";
    }
    updateVerdictCount();
  }

  function alertKey(video, alert) {
    return `${video}|${alert.start_s.toFixed(3)}|${alert.end_s.toFixed(3)}`;
  }

  function updateVerdictCount() {
    const count = document.getElementById("verdict-count");
    if (!count) return;
    const all = Object.values(verdicts);
    const falseAlerts = all.filter((v) => v.verdict === "false_alert").length;
    count.textContent = document.body.dataset.page === "index" ? String(all.length)
      : `${all.length} marked in this report (${falseAlerts} false)` + (storageProblem ? "; " + storageProblem : "");
  }

  function downloadVerdicts() {
    const payload = {
      format: "adplg-verdicts",
      version: 1,
      report_id: REPORT.report_id,
      scores_dir: REPORT.scores_dir,
      checkpoint: REPORT.checkpoint,
      checkpoint_sha256: REPORT.checkpoint_sha256,
      alert_rules: REPORT.alert_rules,
      created: new Date().toISOString(),
      verdicts: Object.values(verdicts).sort((a, b) => a.video.localeCompare(b.video) || a.start_s - b.start_s),
    };
    const blob = new Blob([JSON.stringify(payload, null, 2) + "\n"], { type: "application/json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "verdicts.json" });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  function verdictCell(video, alert, extra) {
    // the True / False alert buttons of one alert; a second click on the pressed one takes the verdict back
    const cell = el("td", { class: "verdict" });
    const key = alertKey(video, alert);
    const marks = [["true_alert", "mark-true", "True alert"], ["false_alert", "mark-false", "False alert"]]
      .map(([verdict, cls, label]) => {
        const mark = el("button", { type: "button", class: cls, "aria-pressed": "false" }, label);
        mark.addEventListener("click", () => {
          if (verdicts[key] && verdicts[key].verdict === verdict) {
            delete verdicts[key];
          } else {
            verdicts[key] = Object.assign({ video: video, start_s: alert.start_s, end_s: alert.end_s,
              verdict: verdict, peak_score: alert.peak_score }, extra, { decided_at: new Date().toISOString() });
          }
          saveVerdicts();
          showMarks();
        });
        cell.appendChild(mark);
        return [verdict, mark];
      });
    function showMarks() {
      for (const [verdict, mark] of marks) {
        mark.setAttribute("aria-pressed", String(Boolean(verdicts[key] && verdicts[key].verdict === verdict)));
      }
    }
    showMarks();
    return cell;
  }

  function sortable(table, state, render) {
    // clicking a header sorts by its data-key (text columns ascending first, numbers descending first)
    for (const th of table.tHead.rows[0].cells) {
      if (!th.dataset.key) continue;
      th.addEventListener("click", () => {
        state.descending = th.dataset.key === state.key ? !state.descending : th.dataset.type !== "text";
        state.key = th.dataset.key;
        render();
      });
    }
  }

  function showSort(table, state) {
    for (const th of table.tHead.rows[0].cells) {
      if (!th.dataset.key) continue;
      th.setAttribute("aria-sort", th.dataset.key === state.key ? (state.descending ? "descending" : "ascending")
        : "none");
    }
  }

  // ---------------------------------------------------------------------------------------------- index page
  function renderIndex() {
    const videos = (window.ADPLG_INDEX || { videos: [] }).videos;
    for (const v of videos) {
      v.alerted_share = v.duration_s > 0 ? v.alert_seconds / v.duration_s : 0;
      v.reviewed = 0;
    }
    const byName = new Map(videos.map((v) => [v.name, v]));
    for (const verdict of Object.values(verdicts)) {
      const v = byName.get(verdict.video);
      if (v) v.reviewed += 1;
    }
    const table = document.getElementById("videos");
    const body = table.tBodies[0];
    const filter = document.getElementById("filter");
    const shown = document.getElementById("shown");
    let sortKey = "max_score", descending = true;

    function row(v) {
      const tr = el("tr");
      const name = el("td");
      name.appendChild(el("a", { href: v.page }, v.name));
      tr.appendChild(name);
      tr.appendChild(el("td", { class: "num" }, clock(v.duration_s)));
      tr.appendChild(el("td", { class: "num" }, v.max_score.toFixed(3)));
      tr.appendChild(el("td", { class: "num" }, String(v.alerts)));
      tr.appendChild(el("td", { class: "num" }, clock(v.alert_seconds)));
      const share = el("td", { class: "num" }, (100 * v.alerted_share).toFixed(1) + "% ");
      share.appendChild(el("span", { class: "bar", style: `width:${Math.round(40 * v.alerted_share)}px` }));
      tr.appendChild(share);
      tr.appendChild(el("td", { class: "num" }, v.alerts ? `${v.reviewed}/${v.alerts}` : "-"));
      return tr;
    }

    function render() {
      const needle = filter.value.trim().toLowerCase();
      const rows = videos.filter((v) => !needle || v.name.toLowerCase().includes(needle));
      rows.sort((a, b) => {
        const order = sortKey === "name" ? a.name.localeCompare(b.name) : a[sortKey] - b[sortKey];
        return (descending ? -order : order) || a.name.localeCompare(b.name);
      });
      const fragment = document.createDocumentFragment();
      for (const v of rows) fragment.appendChild(row(v));
      body.replaceChildren(fragment);
      shown.textContent = `${rows.length} of ${videos.length} video(s)`;
      for (const th of table.tHead.rows[0].cells) {
        th.setAttribute("aria-sort", th.dataset.key === sortKey ? (descending ? "descending" : "ascending") : "none");
      }
    }

    for (const th of table.tHead.rows[0].cells) {
      th.addEventListener("click", () => {
        descending = th.dataset.key === sortKey ? !descending : th.dataset.type !== "text";
        sortKey = th.dataset.key;
        render();
      });
    }
    filter.addEventListener("input", render);
    render();
  }

  // ---------------------------------------------------------------------------------------------- video page
  function renderVideo() {
    const data = JSON.parse(document.getElementById("video-data").textContent);
    const player = document.getElementById("player");
    const rows = [];
    const bands = [];
    let playhead = null;

    const W = 1000, H = 240, left = 40, right = 12, top = 10, bottom = 28;
    const duration = Math.max(data.duration_s, 1e-6);
    const x = (t) => left + (t / duration) * (W - left - right);
    const y = (s) => top + (1 - s) * (H - top - bottom);

    function seek(seconds, index) {
      rows.forEach((tr, i) => tr.classList.toggle("active", i === index));
      bands.forEach((band, i) => band.classList.toggle("active", i === index));
      if (player) {
        player.currentTime = seconds;
        player.scrollIntoView({ block: "nearest" });
      }
      movePlayhead(seconds);
    }

    function movePlayhead(seconds) {
      if (!playhead) return;
      const px = x(Math.min(Math.max(seconds, 0), duration)).toFixed(1);
      playhead.setAttribute("x1", px);
      playhead.setAttribute("x2", px);
    }

    // the curve
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `anomaly score of ${data.video} over ${clock(duration)}` });
    for (const s of [0, 0.5, 1]) {
      chart.appendChild(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(s), y2: y(s) }));
      const label = svg("text", { x: left - 6, y: y(s) + 4, "text-anchor": "end" });
      label.textContent = s.toFixed(1);
      chart.appendChild(label);
    }
    const ticks = 8;
    for (let k = 0; k <= ticks; k++) {
      const t = (duration * k) / ticks;
      const label = svg("text", { x: x(t), y: H - 8, "text-anchor": k === 0 ? "start" : k === ticks ? "end" : "middle" });
      label.textContent = clock(t);
      chart.appendChild(label);
    }
    for (const [start, end] of data.annotations || []) {
      chart.appendChild(svg("rect", { class: "band-gt", x: x(start), y: top, height: H - top - bottom,
        width: Math.max(x(end) - x(start), 1) }));
    }
    const background = svg("rect", { x: left, y: top, width: W - left - right, height: H - top - bottom,
      fill: "transparent" });
    background.addEventListener("click", (event) => {
      const box = chart.getBoundingClientRect();
      const t = (((event.clientX - box.left) / box.width) * W - left) / (W - left - right) * duration;
      seek(Math.min(Math.max(t, 0), duration), -1);
    });
    chart.appendChild(background);
    data.alerts.forEach((alert, i) => {
      const band = svg("rect", { class: "band-alert", x: x(alert.start_s), y: top, height: H - top - bottom,
        width: Math.max(x(alert.end_s) - x(alert.start_s), 2), "data-alert": i });
      const tip = svg("title");
      tip.textContent = `alert ${i + 1}: ${clock(alert.start_s)}-${clock(alert.end_s)}, peak ${alert.peak_score}`;
      band.appendChild(tip);
      band.addEventListener("click", () => seek(alert.start_s, i));
      bands.push(band);
      chart.appendChild(band);
    });
    for (const [start, end] of data.dropped || []) {  // above the on threshold, shorter than the minimum duration
      const band = svg("rect", { class: "band-dropped", x: x(start), y: top, height: H - top - bottom,
        width: Math.max(x(end) - x(start), 2) });
      const tip = svg("title");
      tip.textContent = `no alert: ${clock(start)}-${clock(end)} is shorter than the minimum duration`;
      band.appendChild(tip);
      chart.appendChild(band);
    }
    // steps: each score holds from its frame's time to the next point's (a snippet's frames share one score)
    let path = "";
    for (let i = 0; i < data.t.length; i++) {
      path += i ? "H" + x(data.t[i]).toFixed(1) + "V" + y(data.s[i]).toFixed(1)
        : "M" + x(data.t[i]).toFixed(1) + " " + y(data.s[i]).toFixed(1);
    }
    if (data.t.length) path += "H" + x(duration).toFixed(1);
    chart.appendChild(svg("path", { class: "score", d: path }));
    if (typeof data.on_threshold === "number") {
      chart.appendChild(svg("line", { class: "on", x1: left, x2: W - right, y1: y(data.on_threshold),
        y2: y(data.on_threshold) }));
    }
    if (typeof data.off_threshold === "number" && data.off_threshold !== data.on_threshold) {
      chart.appendChild(svg("line", { class: "off", x1: left, x2: W - right, y1: y(data.off_threshold),
        y2: y(data.off_threshold) }));
    }
    playhead = svg("line", { class: "playhead", x1: left, x2: left, y1: top, y2: H - bottom });
    chart.appendChild(playhead);
    document.getElementById("curve").appendChild(chart);

    // the alerts table
    const body = document.querySelector("#alerts tbody");
    const fragment = document.createDocumentFragment();
    data.alerts.forEach((alert, i) => {
      const tr = el("tr", { "data-alert": i });
      tr.appendChild(el("td", { class: "num" }, String(i + 1)));
      const start = el("td");
      const button = el("button", { type: "button", class: "seek", title: "seek the player to this alert" },
        "\u25B6 " + clock(alert.start_s));
      button.addEventListener("click", () => seek(alert.start_s, i));
      start.appendChild(button);
      tr.appendChild(start);
      tr.appendChild(el("td", { class: "num" }, clock(alert.end_s)));
      tr.appendChild(el("td", { class: "num" }, (alert.end_s - alert.start_s).toFixed(1) + " s"));
      tr.appendChild(el("td", { class: "num" }, alert.peak_score.toFixed(3)));
      const thumb = el("td");
      if (alert.thumb) {
        const img = el("img", { src: alert.thumb, loading: "lazy", alt: `frame at ${clock(alert.start_s)}` });
        img.addEventListener("click", () => seek(alert.start_s, i));
        thumb.appendChild(img);
      } else {
        thumb.textContent = "-";
      }
      tr.appendChild(thumb);
      tr.appendChild(verdictCell(data.video, alert, { features: data.features }));
      rows.push(tr);
      fragment.appendChild(tr);
    });
    if (!data.alerts.length) {
      const tr = el("tr");
      tr.appendChild(el("td", { colspan: 7 }, "No alerts under these rules."));
      fragment.appendChild(tr);
    }
    body.appendChild(fragment);

    if (player) {
      player.addEventListener("timeupdate", () => movePlayhead(player.currentTime));
      player.addEventListener("seeked", () => movePlayhead(player.currentTime));
      player.addEventListener("error", () => {
        const note = document.getElementById("player-error");
        note.textContent = "This browser cannot play the source video (" + player.getAttribute("src") +
          "): its codec or container is not supported here. The curve, the alerts and the thumbnails still work.";
        note.classList.remove("hidden");
      });
    }
  }

  // ---------------------------------------------------------------------------------------------- service page
  // the alerts of an `adplg serve` outputs folder: one shared player for the clips, verdicts per alert
  function renderService() {
    const data = window.ADPLG_SERVICE || { alerts: [], outages: [], cameras: [] };
    const table = document.getElementById("alerts");
    const body = table.tBodies[0];
    const camera = document.getElementById("camera");
    const filter = document.getElementById("filter");
    const shown = document.getElementById("shown");
    const player = document.getElementById("player");
    const state = { key: "start_wall", descending: true };
    for (const name of data.cameras) camera.appendChild(el("option", { value: name }, name));
    const number = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "-");

    function play(alert, tr) {
      for (const row of body.rows) row.classList.toggle("active", row === tr);
      document.getElementById("clip-player").classList.remove("hidden");
      document.getElementById("player-error").classList.add("hidden");
      document.getElementById("clip-title").textContent = `${alert.camera}, ${alert.start_wall}: ` +
        (typeof alert.clip_offset_s === "number" ? `the alert starts ${alert.clip_offset_s.toFixed(1)} s into ` +
          "the clip" : "the clip");
      player.setAttribute("src", alert.clip);
      player.scrollIntoView({ block: "nearest" });
    }

    function row(alert) {
      const tr = el("tr", { "data-event": alert.event_id });
      tr.appendChild(el("td", {}, alert.camera));
      tr.appendChild(el("td", { title: alert.event_id }, alert.start_wall || "-"));
      tr.appendChild(el("td", { class: "num" }, alert.open ? "open" : number(alert.duration_s, 1) + " s"));
      tr.appendChild(el("td", { class: "num" }, number(alert.peak_score, 3)));
      tr.appendChild(el("td", { class: "num" }, number(alert.mean_score, 3)));
      const snap = el("td");
      if (alert.snapshot) {
        const img = el("img", { src: alert.snapshot, loading: "lazy", alt: `${alert.camera} at ${alert.start_wall}` });
        if (alert.clip) img.addEventListener("click", () => play(alert, tr));
        snap.appendChild(img);
      } else {
        snap.textContent = "-";
      }
      tr.appendChild(snap);
      const clip = el("td", { class: "clip" });
      if (alert.clip) {
        const button = el("button", { type: "button", class: "play", title: "play the clip above" }, "\u25B6 play");
        button.addEventListener("click", () => play(alert, tr));
        clip.appendChild(button);
        clip.appendChild(el("a", { href: alert.clip, class: "small" }, " mp4"));
      } else {
        clip.textContent = alert.clip_planned ? "not found" : "-";
      }
      tr.appendChild(clip);
      const markable = typeof alert.start_s === "number" && typeof alert.end_s === "number" && alert.end_s > alert.start_s;
      tr.appendChild(markable ? verdictCell(alert.camera, alert, { event_id: alert.event_id, features: [] })
        : el("td", { class: "small" }, alert.open ? "open: no end yet" : "-"));
      return tr;
    }

    function render() {
      const needle = filter.value.trim().toLowerCase();
      const rows = data.alerts.filter((a) => (!camera.value || a.camera === camera.value) &&
        (!needle || `${a.event_id} ${a.start_wall}`.toLowerCase().includes(needle)));
      rows.sort((a, b) => {
        const x = a[state.key], y = b[state.key];
        const order = typeof x === "string" || typeof y === "string" ? String(x || "").localeCompare(String(y || ""))
          : (x ?? -1) - (y ?? -1);
        return state.descending ? -order : order;
      });
      const fragment = document.createDocumentFragment();
      for (const alert of rows) fragment.appendChild(row(alert));
      if (!rows.length) fragment.appendChild(el("tr")).appendChild(el("td", { colspan: 8 }, "No alerts."));
      body.replaceChildren(fragment);
      shown.textContent = `${rows.length} of ${data.alerts.length} alert(s)`;
      showSort(table, state);
    }

    sortable(table, state, render);
    camera.addEventListener("change", render);
    filter.addEventListener("input", render);
    render();

    const outages = document.querySelector("#outages tbody");
    for (const o of data.outages) {
      const tr = el("tr");
      tr.appendChild(el("td", {}, o.camera));
      tr.appendChild(el("td", {}, o.start_wall || (typeof o.start_s === "number" ? clock(o.start_s) : "-")));
      tr.appendChild(el("td", {}, o.open ? "still down" : o.end_wall || (typeof o.end_s === "number" ? clock(o.end_s)
        : "-")));
      tr.appendChild(el("td", { class: "num" }, typeof o.outage_s === "number" ? o.outage_s.toFixed(1) + " s" : "-"));
      outages.appendChild(tr);
    }
    if (!data.outages.length) outages.appendChild(el("tr")).appendChild(el("td", { colspan: 4 }, "No outages."));
    player.addEventListener("error", () => {
      const note = document.getElementById("player-error");
      note.textContent = "This browser cannot play the clip (" + player.getAttribute("src") + "): its codec or " +
        "container is not supported here, or the file is gone. The mp4 link opens it elsewhere.";
      note.classList.remove("hidden");
    });
  }

  // ---------------------------------------------------------------------------------------------- start
  const page = document.body.dataset.page;
  if (page === "index") renderIndex();
  if (page === "video") renderVideo();
  if (page === "service") renderService();
  const download = document.getElementById("download-verdicts");
  if (download) download.addEventListener("click", downloadVerdicts);
  updateVerdictCount();
})();
